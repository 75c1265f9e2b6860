#!/bin/sh
printf '{"doubled": %s}\n' "$(( $1 * 2 ))"
