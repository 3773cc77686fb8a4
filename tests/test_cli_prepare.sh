#!/usr/bin/env bash
# `gpt prepare` end to end: shards, dataset.json, the split, JSONL, and one-line errors that leave
# no output behind. The shards are read back by an independent numpy reader (Debian's python3)
# and compared with tiktoken's ids of the text (tests/data/corpus/*.ids).
#
# Usage: bash tests/test_cli_prepare.sh PATH_TO_gpt SOURCE_DIR
# Prints "ok - NAME" / "not ok - NAME: DETAILS" per check and "N passed, M failed"; exits 1 on failure.

if [[ $# -ne 2 ]]; then
  echo "usage: bash $0 PATH_TO_gpt SOURCE_DIR" >&2
  exit 2
fi
export LC_ALL=C
export GPT_NO_PROGRESS=1 # even when run from a terminal

G=$1
SRC=$2
CORPUS=$SRC/tests/data/corpus
TS=$SRC/data/tinyshakespeare.txt
PY=/usr/bin/python3

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_cli_prepare


# run ARGS...: gpt ARGS with stdout/stderr in $TMP/out, $TMP/err; sets RC.
run() {
  "$G" "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
  RC=$?
}
why_run() {
  if [[ $RC -ne 0 ]]; then
    echo "exit status $RC, stderr: $(excerpt "$TMP/err")"
  elif [[ -s $TMP/err ]]; then
    echo "unexpected stderr: $(excerpt "$TMP/err")"
  fi
}

# expect_error NAME SUBSTRING DIR ARGS...: fails with one "gpt: error:" line mentioning SUBSTRING,
# prints nothing on stdout, and DIR (the --out it was given) does not exist afterwards.
expect_error() {
  local name=$1 sub=$2 dir=$3 why="" msg
  shift 3
  run "$@"
  msg=$(<"$TMP/err")
  if [[ $RC -eq 0 || $RC -ge 128 ]]; then
    why="exit status $RC; stderr: $(excerpt "$TMP/err")"
  elif [[ -s $TMP/out ]]; then
    why="stdout is not empty: $(excerpt "$TMP/out")"
  elif [[ $(wc -l <"$TMP/err") -ne 1 || $msg != "gpt: error:"* ]]; then
    why="expected one 'gpt: error:' line: $(excerpt "$TMP/err")"
  elif ! grep -qiF -- "$sub" <<<"$msg"; then
    why="message does not mention '$sub': $msg"
  elif [[ -n $dir && -e $dir ]]; then
    why="left $dir behind: $(ls -A "$dir" | head -5 | tr '\n' ' ')"
  fi
  report "$name" "$why"
}

# The independent reader: checks every shard's llm.c header and size, and prints the tokens of a
# split (one per line), or with --decode-chars DIR the text they spell in DIR/chars.json.
cat >"$TMP/read_shards.py" <<'EOF'
import glob, json, os, sys
import numpy as np

def read(path):
    raw = open(path, "rb").read()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert len(raw) >= 1024, f"{path}: short header"
    assert header[0] == 20240520, f"{path}: magic {header[0]}"
    assert header[1] == 1, f"{path}: version {header[1]}"
    assert len(raw) == 1024 + 2 * int(header[2]), f"{path}: {len(raw)} bytes for {header[2]} tokens"
    assert not header[3:].any(), f"{path}: reserved header ints are not zero"
    return np.frombuffer(raw[1024:], dtype="<u2")

d, split = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(d, split + "_*.bin")))
tokens = np.concatenate([read(f) for f in files]) if files else np.zeros(0, dtype="<u2")
if len(sys.argv) > 3 and sys.argv[3] == "--decode-chars":
    chars = json.load(open(os.path.join(d, "chars.json")))["chars"]
    sys.stdout.buffer.write("".join(chars[t] for t in tokens).encode())
else:
    sys.stdout.write("".join(f"{t}\n" for t in tokens))
EOF
HAVE_NUMPY=1
$PY -c 'import numpy' 2>/dev/null || HAVE_NUMPY=0

# tokens DIR SPLIT [--decode-chars] > FILE
tokens() { $PY "$TMP/read_shards.py" "$@"; }

# json_get FILE KEY: one value of dataset.json, as Python prints it.
json_get() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# Tiny Shakespeare, GPT-2 BPE: the nanoGPT setup.

run prepare --input "$TS" --out "$TMP/ts"
why=$(why_run)
[[ -z $why ]] && ! grep -q "^train: 301,967 tokens in 1 shard$" "$TMP/out" && why="summary: $(excerpt "$TMP/out")"
[[ -z $why ]] && ! grep -q "^val:   36,058 tokens in 1 shard$" "$TMP/out" && why="summary: $(excerpt "$TMP/out")"
report "prepare tinyshakespeare: summary" "$why"
listing=$(cd "$TMP/ts" && ls -A | tr '\n' ' ')
report "prepare tinyshakespeare: files" \
  "$([[ $listing == "dataset.json train_000000.bin val_000000.bin " ]] || echo "got: $listing")"

if [[ $HAVE_NUMPY -eq 1 ]]; then
  why=""
  for key in format tokenizer vocab_size eot_id documents train_tokens val_tokens train_shards val_shards; do
    v=$(json_get "$TMP/ts/dataset.json" "$key" 2>&1)
    case $key in
      format) want=llmc-shards ;; tokenizer) want=gpt2 ;; vocab_size) want=50257 ;; eot_id) want=50256 ;;
      documents) want=1 ;; train_tokens) want=301967 ;; val_tokens) want=36058 ;; *) want=1 ;;
    esac
    [[ $v != "$want" ]] && why="$why $key=$v (want $want)"
  done
  report "prepare tinyshakespeare: dataset.json" "$why"

  { tokens "$TMP/ts" train && tokens "$TMP/ts" val; } >"$TMP/ts.ids" 2>"$TMP/py.err"
  why=""
  [[ -s $TMP/py.err ]] && why="reader: $(excerpt "$TMP/py.err")"
  [[ -z $why ]] && ! cmp -s "$TMP/ts.ids" "$CORPUS/tinyshakespeare.ids" && why="train + val differ from tiktoken's ids"
  report "prepare tinyshakespeare: numpy reader, train + val = tiktoken ids" "$why"
else
  echo "ok - numpy reader checks # SKIP no numpy for $PY"
fi

# Streaming in tiny chunks on one thread: byte-identical shards.
run prepare --input "$TS" --out "$TMP/ts_small" --chunk-bytes 333 --threads 1
why=$(why_run)
for f in train_000000.bin val_000000.bin dataset.json; do
  [[ -z $why ]] && [[ $f != dataset.json ]] && ! cmp -s "$TMP/ts/$f" "$TMP/ts_small/$f" && why="$f differs"
done
report "prepare --chunk-bytes 333 --threads 1: identical shards" "$why"

# Character vocabulary: built from the text, decodes back to it.
run prepare --input "$TS" --out "$TMP/ts_char" --tokenizer char -q
why=$(why_run)
[[ -z $why && -s $TMP/out ]] && why="-q printed: $(excerpt "$TMP/out")"
report "prepare --tokenizer char -q: quiet" "$why"
if [[ $HAVE_NUMPY -eq 1 ]]; then
  { tokens "$TMP/ts_char" train --decode-chars && tokens "$TMP/ts_char" val --decode-chars; } >"$TMP/ts_char.txt"
  why=""
  cmp -s "$TMP/ts_char.txt" "$TS" || why="decoded text differs from the input"
  [[ $(json_get "$TMP/ts_char/dataset.json" vocab_size) == 65 ]] || why="$why vocab_size is not 65"
  [[ $(json_get "$TMP/ts_char/dataset.json" eot_id) == None ]] || why="$why eot_id is not null"
  [[ $(json_get "$TMP/ts_char/dataset.json" val_tokens) == 111539 ]] || why="$why val_tokens is not 111539"
  report "prepare --tokenizer char: decodes to the input" "$why"
fi

# Shards fill in order.
run prepare --input "$TS" --out "$TMP/ts_shards" --shard-tokens 50000
why=$(why_run)
n=$(ls "$TMP/ts_shards" | grep -c '^train_')
[[ -z $why && $n -ne 7 ]] && why="$n train shards (want ceil(301967 / 50000) = 7)"
if [[ -z $why && $HAVE_NUMPY -eq 1 ]]; then
  { tokens "$TMP/ts_shards" train && tokens "$TMP/ts_shards" val; } >"$TMP/ts_shards.ids"
  cmp -s "$TMP/ts_shards.ids" "$CORPUS/tinyshakespeare.ids" || why="train + val differ from tiktoken's ids"
fi
report "prepare --shard-tokens 50000: 7 train shards, same tokens" "$why"

# No validation split.
run prepare --input "$TS" --out "$TMP/ts_noval" --val-fraction 0
why=$(why_run)
[[ -z $why ]] && ls "$TMP/ts_noval" | grep -q '^val_' && why="a val shard was written"
report "prepare --val-fraction 0: no val shards" "$why"

# ---------------------------------------------------------------------------------------------
# Several documents and JSONL.

run prepare --input "$CORPUS/english_prose.txt" "$CORPUS/cjk.txt" "$CORPUS/emoji.txt" --out "$TMP/docs" \
  --val-fraction 0.2
why=$(why_run)
if [[ -z $why && $HAVE_NUMPY -eq 1 ]]; then
  # Each document's tiktoken ids then <|endoftext|>; the total is 7721 bytes, so val starts at byte
  # 7721 - 1544 = 6177: no document starts there, so val is the last document, emoji.txt.
  { cat "$CORPUS/english_prose.ids" && echo 50256 && cat "$CORPUS/cjk.ids" && echo 50256; } >"$TMP/docs_train.want"
  { cat "$CORPUS/emoji.ids" && echo 50256; } >"$TMP/docs_val.want"
  tokens "$TMP/docs" train >"$TMP/docs_train.got"
  tokens "$TMP/docs" val >"$TMP/docs_val.got"
  cmp -s "$TMP/docs_train.got" "$TMP/docs_train.want" || why="train is not prose + EOT + cjk + EOT"
  cmp -s "$TMP/docs_val.got" "$TMP/docs_val.want" || why="$why; val is not emoji + EOT"
fi
report "prepare 3 documents: whole documents, each followed by <|endoftext|>" "$why"

printf '{"id": 1, "body": "First document.\\n"}\n\n{"id": 2, "body": "Second: caf\\u00e9 <|endoftext|>"}\n' \
  >"$TMP/docs.jsonl"
run prepare --input "$TMP/docs.jsonl" --out "$TMP/jsonl" --jsonl-field body --val-fraction 0
why=$(why_run)
if [[ -z $why && $HAVE_NUMPY -eq 1 ]]; then
  tokens "$TMP/jsonl" train | tr '\n' ' ' >"$TMP/jsonl.got"
  # tiktoken: "First document.\n" and "Second: café <|endoftext|>" (ordinary text in JSONL).
  want="5962 3188 13 198 50256 12211 25 40304 1279 91 437 1659 5239 91 29 50256 "
  [[ $(<"$TMP/jsonl.got") == "$want" ]] || why="got $(<"$TMP/jsonl.got")"
  [[ $(json_get "$TMP/jsonl/dataset.json" documents) == 2 ]] || why="$why; documents != 2"
fi
report "prepare JSONL --jsonl-field body" "$why"

# ---------------------------------------------------------------------------------------------
# Replacing a dataset.

expect_error "prepare into an existing dataset needs --force" "--force" "" prepare --input "$TS" --out "$TMP/ts_shards"
run prepare --input "$TS" --out "$TMP/ts_shards" --force
why=$(why_run)
n=$(ls "$TMP/ts_shards" | grep -c '^train_')
[[ -z $why && $n -ne 1 ]] && why="$n train shards left (want 1)"
report "prepare --force replaces the old shards" "$why"

# ---------------------------------------------------------------------------------------------
# Errors: one line, non-zero exit, nothing left behind.

printf '' >"$TMP/empty.txt"
printf '{"text": "fine"}\n{"text": "broken"\n' >"$TMP/bad.jsonl"
printf '{"other": "x"}\n' >"$TMP/nofield.jsonl"
printf 'caf\xe9\n' >"$TMP/latin1.txt"
printf 'x' >"$TMP/a_file"
O=$TMP/never
expect_error "missing input" "cannot open $TMP/missing.txt" "$O" prepare --input "$TMP/missing.txt" --out "$O"
expect_error "empty input" "is empty" "$O" prepare --input "$TS" "$TMP/empty.txt" --out "$O"
expect_error "input is a directory" "directory" "$O" prepare --input "$TMP" --out "$O"
expect_error "bad JSONL line" "bad.jsonl:2: not valid JSON" "$O" prepare --input "$TMP/bad.jsonl" --out "$O"
expect_error "JSONL without the field" 'no string field "text"' "$O" prepare --input "$TMP/nofield.jsonl" --out "$O"
expect_error "char vocabulary of invalid UTF-8" "not valid UTF-8 at byte 3" "$O" \
  prepare --input "$TMP/latin1.txt" --out "$O" --tokenizer char
expect_error "--val-fraction 1" "--val-fraction must be at least 0 and below 1" "$O" \
  prepare --input "$TS" --out "$O" --val-fraction 1
expect_error "--val-fraction -0.1" "--val-fraction" "$O" prepare --input "$TS" --out "$O" --val-fraction -0.1
expect_error "--val-fraction abc" "--val-fraction" "$O" prepare --input "$TS" --out "$O" --val-fraction abc
expect_error "--shard-tokens 0" "--shard-tokens must be between 1" "$O" prepare --input "$TS" --out "$O" --shard-tokens 0
expect_error "--vocab and --tokenizer" "not both" "$O" prepare --input "$TS" --out "$O" --vocab "$SRC/data/gpt2" --tokenizer char
expect_error "--vocab of a missing directory" "no vocabulary" "$O" prepare --input "$TS" --out "$O" --vocab "$TMP/novocab"
expect_error "--tokenizer foo" "expected gpt2, char" "$O" prepare --input "$TS" --out "$O" --tokenizer foo
expect_error "--jsonl-field ''" "--jsonl-field" "$O" prepare --input "$TS" --out "$O" --jsonl-field ""
expect_error "--out is a file" "not a directory" "" prepare --input "$TS" --out "$TMP/a_file"
expect_error "no --input" "--input" "$O" prepare --out "$O"
mkdir -p "$TMP/readonly"
chmod 555 "$TMP/readonly"
if [[ $(id -u) -ne 0 ]]; then # root can write anywhere
  expect_error "--out not writable" "cannot" "$TMP/readonly/ds" prepare --input "$TS" --out "$TMP/readonly/ds"
fi

run prepare --help
why=$(why_run)
for opt in --input --out --vocab --tokenizer --val-fraction --shard-tokens --jsonl-field --threads --force; do
  [[ -z $why ]] && ! grep -qF -- "$opt" "$TMP/out" && why="--help does not mention $opt"
done
report "prepare --help" "$why"

cli_finish
