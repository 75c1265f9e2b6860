#!/usr/bin/env bash
# Regenerates the sample papers under examples/papers/ (used by the demo and
# by tests/pipeline_e2e.rs).
#
# The papers are fictional and were written for this project as groff -ms
# sources in examples/papers/src/*.ms. The committed PDFs are the artifact:
# neither CI nor the test suite runs this script. It needs groff with the
# PDF device (gropdf) and the tbl preprocessor, e.g. on Debian:
#
#   apt-get install -y groff
#
# Output is reproducible: SOURCE_DATE_EPOCH pins the PDF creation date, so
# re-running on the same groff version rewrites identical bytes.
#
# examples/papers.yml lists each paper's arXiv-style id, title and PDF; a new
# source needs an entry there too.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/examples/papers"
src="$out/src"
max_bytes=$((60 * 1024))

command -v groff >/dev/null 2>&1 || {
  echo "make-example-papers: missing groff (apt-get install -y groff)" >&2
  exit 1
}
if ! printf '.PP\nx\n' | groff -ms -Tpdf >/dev/null 2>&1; then
  echo "make-example-papers: groff has no PDF device (install the full groff package, not groff-base)" >&2
  exit 1
fi

export SOURCE_DATE_EPOCH=1767225600 # 2026-01-01T00:00:00Z

shopt -s nullglob
sources=("$src"/*.ms)
if [ "${#sources[@]}" -eq 0 ]; then
  echo "make-example-papers: no sources in $src" >&2
  exit 1
fi

for ms in "${sources[@]}"; do
  name="$(basename "$ms" .ms)"
  pdf="$out/$name.pdf"
  # -t runs tbl (the results tables); -ms the macro package; -Tpdf gropdf.
  # groff warnings (e.g. an unbreakable line) fail the build: fix the source.
  warnings="$(groff -t -ms -Tpdf -ww "$ms" 2>&1 >"$pdf")"
  if [ -n "$warnings" ]; then
    echo "make-example-papers: $name.ms: $warnings" >&2
    exit 1
  fi
  size="$(wc -c <"$pdf")"
  if [ "$size" -ge "$max_bytes" ]; then
    echo "make-example-papers: $name.pdf is $size bytes (limit $max_bytes)" >&2
    exit 1
  fi
  if ! grep -q "pdf: papers/$name.pdf" "$root/examples/papers.yml"; then
    echo "make-example-papers: warning: $name.pdf is not listed in examples/papers.yml" >&2
  fi
  echo "$name.pdf: $size bytes"
done
