#!/usr/bin/env bash
# Tokenizer benchmark against its peer, same file, same session, same machine:
#   gpt bench tokenizer   vs   tiktoken 0.14.0 (bench/tiktoken_bench.py)
# on a generated 5.5 MB mixed-text file (and on Tiny Shakespeare). The ids of gpt.cpp are checked
# against tiktoken's before any figure is printed. Run it under the CPU lock:
#   flock /tmp/cpu.lock bench/run_tokenizer_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/gpt ] && [ -x .venv/bin/python ] || { echo "run ./setup.sh test first (builds gpt, makes .venv)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
build/gpt bench tokenizer --repeat 1 --write-corpus "$tmp/mixed.txt" > /dev/null
for input in "$tmp/mixed.txt" data/tinyshakespeare.txt; do
  echo "== $(basename "$input")"
  .venv/bin/python bench/tiktoken_bench.py --input "$input" --repeat 5 --ids-out "$tmp/ids" | tail -1
  build/gpt bench tokenizer --input "$input" --repeat 5 --check-ids "$tmp/ids" | tail -2
done
