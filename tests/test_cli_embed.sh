#!/usr/bin/env bash
# The command-line contract of `gpt embed`: the summary and JSON outputs, --text against --input
# (lines and JSONL, texts and token ids), --normalize giving unit vectors, the two poolings, and bad
# input (one "gpt: error:" line, non-zero exit, no stdout). The numbers themselves are checked by
# tests/test_embed.cpp (against the hidden states) and tests/hf_embeddings.py (against transformers).
#
# Usage: bash tests/test_cli_embed.sh PATH_TO_gpt
#
# Prints one line per check ("ok - NAME" or "not ok - NAME: DETAILS") and ends with
# "N passed, M failed"; exits 1 if any check failed. Needs bash, coreutils, grep and awk.

if [[ $# -lt 1 ]]; then
  echo "usage: bash $0 PATH_TO_gpt" >&2
  exit 2
fi
export LC_ALL=C
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # tiny models: threads only add overhead
G=$1

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_cli_embed

why_same() { cmp -s "$1" "$2" || echo "$(basename "$1") and $(basename "$2") differ: $(excerpt "$1") | $(excerpt "$2")"; }
why_differ() { cmp -s "$1" "$2" && echo "$(basename "$1") and $(basename "$2") are identical"; }

# expect_error NAME SUBSTRING ARGS...: exactly one stderr line "gpt: error: ...", no stdout.
expect_error() {
  local name=$1 sub=$2 why="" msg
  shift 2
  x "$TMP/e.out" "$TMP/e.err" "$@"
  msg=$(<"$TMP/e.err")
  if [[ $RC -eq 0 || $RC -ge 128 ]]; then
    why="exit status $RC; stderr: $(excerpt "$TMP/e.err")"
  elif [[ -s $TMP/e.out ]]; then
    why="stdout is not empty: $(excerpt "$TMP/e.out")"
  elif [[ $(wc -l <"$TMP/e.err") -ne 1 || $msg != "gpt: error:"* ]]; then
    why="expected one 'gpt: error:' line: $(excerpt "$TMP/e.err")"
  elif ! grep -qiF -- "$sub" <<<"$msg"; then
    why="message does not mention '$sub': $msg"
  fi
  report "$name" "$why"
}

M=$TMP/tiny
x "$TMP/init.out" "$TMP/init.err" init --n-layer 2 --n-head 2 --n-embd 32 --context 16 --seed 5 --out "$M"
report "init a tiny model" "$(why_ok $RC "$TMP/init.err")"

# The summary: a header, then one line per input with its token count.
x "$TMP/s.out" "$TMP/s.err" embed --model "$M" --text "Hello world" --text "The quick brown fox"
why=$(why_run "$TMP/s.err")
[[ -z $why && $(head -1 "$TMP/s.out") != "# 2 inputs, 32 dimensions, mean pooling" ]] && why="header: $(excerpt "$TMP/s.out")"
[[ -z $why && $(sed -n 2p "$TMP/s.out") != "0  2 tokens  norm "* ]] && why="line 0: $(excerpt "$TMP/s.out")"
[[ -z $why && $(sed -n 3p "$TMP/s.out") != "1  4 tokens  norm "* ]] && why="line 1: $(excerpt "$TMP/s.out")"
report "summary: header and one line per input" "$why"

# --json: one line per input, n_embd floats each.
x "$TMP/t.json" "$TMP/t.err" embed --model "$M" --text "Hello world" --text "The quick brown fox" --json
why=$(why_run "$TMP/t.err")
[[ -z $why && $(wc -l <"$TMP/t.json") -ne 2 ]] && why="expected 2 lines: $(excerpt "$TMP/t.json")"
dims=$(head -1 "$TMP/t.json" | sed -E 's/.*"embedding":\[([^]]*)\].*/\1/' | tr ',' '\n' | wc -l)
[[ -z $why && $dims -ne 32 ]] && why="$dims values, expected 32"
[[ -z $why && $(head -1 "$TMP/t.json") != '{"index":0,"tokens":2,"embedding":['* ]] && why="$(excerpt "$TMP/t.json")"
report "--json: {index, tokens, embedding} per input" "$why"

# --input: a file of lines, and a .jsonl of strings, objects and token ids, give the same vectors.
printf 'Hello world\n\nThe quick brown fox\n' >"$TMP/in.txt"
x "$TMP/f.json" "$TMP/f.err" embed --model "$M" --input "$TMP/in.txt" --json
report "--input lines (blank skipped) == --text" "$(why_run "$TMP/f.err")$(why_same "$TMP/f.json" "$TMP/t.json")"
printf '[15496, 995]\n{"text": "The quick brown fox"}\n' >"$TMP/in.jsonl"
x "$TMP/j.json" "$TMP/j.err" embed --model "$M" --input "$TMP/in.jsonl" --json
report "--input .jsonl (token ids, objects) == --text" "$(why_run "$TMP/j.err")$(why_same "$TMP/j.json" "$TMP/t.json")"
printf 'Hello world\n' | "$G" embed --model "$M" --input - --json >"$TMP/stdin.json" 2>"$TMP/stdin.err"
RC=$?
report "--input - reads lines from stdin" "$(why_run "$TMP/stdin.err")$(why_same "$TMP/stdin.json" <(head -1 "$TMP/t.json"))"

# --normalize: unit vectors; --pooling last differs from mean.
x "$TMP/n.json" "$TMP/n.err" embed --model "$M" --text "Hello world" --json --normalize
norm=$(sed -E 's/.*"embedding":\[([^]]*)\].*/\1/' "$TMP/n.json" | tr ',' '\n' | awk '{s += $1 * $1} END {printf "%.5f", sqrt(s)}')
report "--normalize: unit length" "$(why_run "$TMP/n.err")$([[ $norm != 1.00000 ]] && echo "norm $norm")"
x "$TMP/l.json" "$TMP/l.err" embed --model "$M" --text "Hello world" --text "The quick brown fox" --json --pooling last
report "--pooling last differs from mean" "$(why_run "$TMP/l.err")$(why_differ "$TMP/l.json" "$TMP/t.json")"
x "$TMP/b.json" "$TMP/b.err" embed --model "$M" --input "$TMP/in.txt" --json --batch-tokens 1
report "--batch-tokens 1 (one input at a time) runs" "$(why_run "$TMP/b.err")"

# Bad input.
expect_error "error: no inputs" "--text" embed --model "$M"
expect_error "error: --text and --input" "--text" embed --model "$M" --text a --input "$TMP/in.txt"
expect_error "error: unknown pooling" "--pooling must be mean or last" embed --model "$M" --text a --pooling max
expect_error "error: an empty text" "input 1 is empty" embed --model "$M" --text a --text ""
printf '%s\n' "$(seq -s, 1 17 | sed 's/^/[/; s/$/]/')" >"$TMP/long.jsonl"
expect_error "error: longer than the context" "input 0 has 17 tokens, more than the model's context of 16" \
  embed --model "$M" --input "$TMP/long.jsonl"
printf '[1, 99999]\n' >"$TMP/oov.jsonl"
expect_error "error: a token id outside the vocabulary" "token id 99999 is out of range" \
  embed --model "$M" --input "$TMP/oov.jsonl"
printf '[1, -2]\n' >"$TMP/neg.jsonl"
expect_error "error: a negative token id" "line 1" embed --model "$M" --input "$TMP/neg.jsonl"
printf '"a"\n{"text": 3}\n' >"$TMP/bad.jsonl"
expect_error "error: a JSONL line of the wrong kind" "line 2" embed --model "$M" --input "$TMP/bad.jsonl"
printf '"a"\n{"text": \n' >"$TMP/broken.jsonl"
expect_error "error: malformed JSON" "line 2" embed --model "$M" --input "$TMP/broken.jsonl"
: >"$TMP/empty.txt"
expect_error "error: an empty input file" "holds no inputs" embed --model "$M" --input "$TMP/empty.txt"
expect_error "error: a missing input file" "no-such-file" embed --model "$M" --input "$TMP/no-such-file.txt"
expect_error "error: a missing model" "no-such-model" embed --model "$TMP/no-such-model" --text a

cli_finish
