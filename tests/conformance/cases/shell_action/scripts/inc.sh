#!/bin/sh
# Reads the context JSON on stdin, prints a JSON object on stdout.
ctx=$(cat)
case "$ctx" in
  *'"n"'*) saw=true ;;
  *) saw=false ;;
esac
printf '{"incremented": %s, "saw_stdin": %s}\n' "$(( $1 + 1 ))" "$saw"
