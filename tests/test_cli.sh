#!/usr/bin/env bash
# The command-line contract of `gpt`: outputs, exit codes and one-line errors.
#
# Usage: bash tests/test_cli.sh PATH_TO_gpt SOURCE_DIR
#
# Prints one line per check ("ok - NAME" or "not ok - NAME: DETAILS") and ends with
# "N passed, M failed"; exits 1 if any check failed. Needs only bash, coreutils, cmp and grep.
# Successful commands must also leave stderr empty (so sanitizer reports fail the check), and
# every error must exit non-zero with exactly one stderr line "gpt: error: ..." and no stdout.

if [[ $# -ne 2 ]]; then
  echo "usage: bash $0 PATH_TO_gpt SOURCE_DIR" >&2
  exit 2
fi
export LC_ALL=C # byte semantics for ${#var}, grep and sort

G=$1
SRC=$2
CORPUS=$SRC/tests/data/corpus
TS=$SRC/data/tinyshakespeare.txt
GPT2=$SRC/data/gpt2

if [[ ! -x $G ]]; then
  echo "not ok - setup: $G is not an executable"
  echo "0 passed, 1 failed"
  exit 1
fi
for f in "$TS" "$GPT2/encoder.json" "$GPT2/vocab.bpe" "$CORPUS/tinyshakespeare.ids" "$CORPUS/special.txt"; do
  if [[ ! -f $f ]]; then
    echo "not ok - setup: missing fixture $f"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_cli_test


# x IN OUT ERR ARGS...: runs gpt ARGS with stdin IN, stdout OUT and stderr ERR; sets RC.
x() {
  local in=$1 out=$2 err=$3
  shift 3
  "$G" "$@" <"$in" >"$out" 2>"$err"
  RC=$?
}

# why_run ERR: why the last x call did not succeed cleanly (empty if it did).
why_run() {
  if [[ $RC -ne 0 ]]; then
    echo "exit status $RC, stderr: $(excerpt "$1")"
  elif [[ -s $1 ]]; then
    echo "unexpected stderr: $(excerpt "$1")"
  fi
}

# why_cmp GOT WANT: empty if the files are byte-identical.
why_cmp() {
  if ! cmp -s "$1" "$2"; then
    echo "output differs from $(basename "$2"): $(cmp "$1" "$2" 2>&1 | head -n 1)"
  fi
}

# why_roundtrip SRC VOCAB-ARGS...: tokenize SRC into $TMP/rt.ids, detokenize it, compare with SRC.
why_roundtrip() {
  local src=$1 why
  shift
  x "$EMPTY" "$TMP/rt.ids" "$TMP/rt.err" tokenize "$@" --input "$src"
  why=$(why_run "$TMP/rt.err")
  if [[ -z $why ]]; then
    x "$TMP/rt.ids" "$TMP/rt.out" "$TMP/rt.err" detokenize "$@"
    why=$(why_run "$TMP/rt.err")
    [[ -z $why ]] && why=$(why_cmp "$TMP/rt.out" "$src")
  fi
  echo "$why"
}

# why_error RC OUT ERR SUBSTRING: the contract of a failing command.
why_error() {
  local rc=$1 out=$2 err=$3 sub=$4 msg lines bytes
  if [[ $rc -eq 0 ]]; then
    echo "exit status 0 (expected an error); stderr: $(excerpt "$err")"
    return
  fi
  if [[ $rc -ge 128 ]]; then
    echo "killed by a signal (exit status $rc); stderr: $(excerpt "$err")"
    return
  fi
  if [[ -s $out ]]; then
    echo "stdout is not empty: $(excerpt "$out")"
    return
  fi
  lines=$(wc -l <"$err")
  bytes=$(wc -c <"$err")
  msg=$(<"$err")
  if [[ $lines -ne 1 || $((${#msg} + 1)) -ne $bytes ]]; then
    echo "expected exactly one stderr line, got $lines newline(s) in $bytes bytes: $(excerpt "$err")"
    return
  fi
  if [[ $msg != "gpt: error:"* ]]; then
    echo "stderr does not start with 'gpt: error:': $msg"
    return
  fi
  if [[ -n $sub ]] && ! grep -qiF -- "$sub" <<<"$msg"; then
    echo "message does not mention '$sub': $msg"
  fi
}

# expect_error NAME SUBSTRING STDIN ARGS...: gpt ARGS must fail per the error contract.
expect_error() {
  local name=$1 sub=$2 in=$3
  shift 3
  x "$in" "$TMP/err.out" "$TMP/err.err" "$@"
  report "$name" "$(why_error "$RC" "$TMP/err.out" "$TMP/err.err" "$sub")"
}

# An input file from a literal string (printf format, so \xNN escapes work).
# shellcheck disable=SC2059
text() { printf "$2" >"$TMP/$1"; }

EMPTY=$TMP/empty.in
: >"$EMPTY"

# ---------------------------------------------------------------------------------------------
# tokenize: tiktoken conformance fixtures

nfix=0
for txt in "$CORPUS"/*.txt; do
  name=$(basename "$txt" .txt)
  ids=$CORPUS/$name.ids
  [[ -f $ids ]] || continue
  nfix=$((nfix + 1))
  x "$EMPTY" "$TMP/fix_$name.ids" "$TMP/tok.err" tokenize --input "$txt"
  why=$(why_run "$TMP/tok.err")
  [[ -z $why ]] && why=$(why_cmp "$TMP/fix_$name.ids" "$ids")
  report "tokenize --input $name.txt equals $name.ids" "$why"
done
report "corpus has tiktoken fixtures" "$([[ $nfix -ge 10 ]] || echo "only $nfix NAME.txt with NAME.ids in $CORPUS")"

x "$EMPTY" "$TMP/fix_tinyshakespeare.ids" "$TMP/ts.err" tokenize --input "$TS"
why=$(why_run "$TMP/ts.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/fix_tinyshakespeare.ids" "$CORPUS/tinyshakespeare.ids")
report "tokenize --input tinyshakespeare.txt equals tinyshakespeare.ids" "$why"

for name in english_prose emoji; do
  x "$CORPUS/$name.txt" "$TMP/tok.out" "$TMP/tok.err" tokenize
  why=$(why_run "$TMP/tok.err")
  [[ -z $why ]] && why=$(why_cmp "$TMP/tok.out" "$CORPUS/$name.ids")
  report "tokenize from stdin: $name" "$why"
done
x "$TS" "$TMP/tok.out" "$TMP/tok.err" tokenize
why=$(why_run "$TMP/tok.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/tok.out" "$CORPUS/tinyshakespeare.ids")
report "tokenize from stdin: tinyshakespeare" "$why"

x "$EMPTY" "$TMP/tok.out" "$TMP/tok.err" tokenize --allow-special --input "$CORPUS/special.txt"
why=$(why_run "$TMP/tok.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/tok.out" "$CORPUS/special.allowed.ids")
report "tokenize --allow-special special.txt equals special.allowed.ids" "$why"
report "special.ids and special.allowed.ids differ" \
  "$(cmp -s "$CORPUS/special.ids" "$CORPUS/special.allowed.ids" && echo "the fixtures are identical")"

x "$EMPTY" "$TMP/tok.out" "$TMP/tok.err" tokenize
why=$(why_run "$TMP/tok.err")
[[ -z $why && -s $TMP/tok.out ]] && why="empty input printed ids: $(excerpt "$TMP/tok.out")"
report "tokenize of empty input prints nothing" "$why"

# --threads
for t in 1 2; do
  x "$EMPTY" "$TMP/thr$t.ids" "$TMP/thr.err" tokenize --threads "$t" --input "$TS"
  why=$(why_run "$TMP/thr.err")
  [[ -z $why ]] && why=$(why_cmp "$TMP/thr$t.ids" "$CORPUS/tinyshakespeare.ids")
  report "tokenize --threads $t tinyshakespeare equals the fixture" "$why"
done
report "tokenize --threads 1 and --threads 2 identical" "$(why_cmp "$TMP/thr1.ids" "$TMP/thr2.ids")"

# --output
mkdir "$TMP/outdir"
x "$EMPTY" "$TMP/tok.out" "$TMP/tok.err" tokenize --input "$TS" --output "$TMP/outdir/ts.ids"
why=$(why_run "$TMP/tok.err")
if [[ -z $why ]]; then
  if [[ ! -f $TMP/outdir/ts.ids ]]; then
    why="--output file was not created"
  else
    why=$(why_cmp "$TMP/outdir/ts.ids" "$CORPUS/tinyshakespeare.ids")
  fi
fi
report "tokenize --output writes the ids file" "$why"
leftover=$(ls -A "$TMP/outdir")
report "tokenize --output leaves no temporary files" \
  "$([[ $leftover == ts.ids ]] || echo "directory holds: $(tr '\n' ' ' <<<"$leftover")")"
expect_error "error: tokenize --output into a missing directory" "" "$EMPTY" \
  tokenize --input "$CORPUS/english_prose.txt" --output "$TMP/no/such/dir/x.ids"

# --stats
x "$EMPTY" "$TMP/stats.out" "$TMP/stats.err" tokenize --stats --input "$TS"
why=$(why_run "$TMP/stats.err")
if [[ -z $why ]]; then
  b=$(grep -m1 'bytes:' "$TMP/stats.out")
  t=$(grep -m1 'tokens:' "$TMP/stats.out")
  r=$(grep -m1 'bytes/token:' "$TMP/stats.out")
  bv=${b#*bytes:}; bv=${bv//[ ,]/}
  tv=${t#*tokens:}; tv=${tv//[ ,]/}
  rv=${r#*bytes/token:}; rv=${rv// /}
  if [[ -z $b || -z $t || -z $r ]]; then
    why="missing bytes:/tokens:/bytes/token: lines: $(excerpt "$TMP/stats.out")"
  elif [[ $bv != 1115394 ]]; then
    why="bytes: line is '$b' (want 1,115,394)"
  elif [[ $tv != 338025 ]]; then
    why="tokens: line is '$t' (want 338,025)"
  elif [[ $rv != 3.30* && $rv != 3.299* ]]; then
    why="bytes/token: line is '$r' (want 3.300)"
  elif grep -qx '[0-9][0-9]*' "$TMP/stats.out"; then
    why="--stats also printed ids"
  fi
fi
report "tokenize --stats on tinyshakespeare" "$why"

# ---------------------------------------------------------------------------------------------
# detokenize: round trips (reusing the ids printed by the fixture checks above)

for txt in "$CORPUS"/*.txt "$TS"; do
  name=$(basename "$txt" .txt)
  why=""
  if [[ -f $TMP/fix_$name.ids ]]; then
    cp "$TMP/fix_$name.ids" "$TMP/rt.ids"
  else
    x "$EMPTY" "$TMP/rt.ids" "$TMP/rt.err" tokenize --input "$txt"
    why=$(why_run "$TMP/rt.err")
  fi
  if [[ -z $why ]]; then
    x "$TMP/rt.ids" "$TMP/rt.out" "$TMP/rt.err" detokenize
    why=$(why_run "$TMP/rt.err")
    [[ -z $why ]] && why=$(why_cmp "$TMP/rt.out" "$txt")
  fi
  report "round trip tokenize|detokenize: $name" "$why"
done

# Random bytes: invalid UTF-8, NULs, encoded surrogates, code points above U+10FFFF, CR/LF.
printf '\x00\xff\xfe\xc3(\xed\xa0\x80\xf4\x90\x80\x80 \r\n\x00\xc0\xaf\xe2\x82' >"$TMP/random.bin"
head -c 65536 /dev/urandom >>"$TMP/random.bin"
x "$EMPTY" "$TMP/rnd.ids" "$TMP/rnd.err" tokenize --input "$TMP/random.bin"
why=$(why_run "$TMP/rnd.err")
if [[ -z $why ]]; then
  x "$EMPTY" "$TMP/rnd.out" "$TMP/rnd.err" detokenize --input "$TMP/rnd.ids"
  why=$(why_run "$TMP/rnd.err")
  [[ -z $why ]] && why=$(why_cmp "$TMP/rnd.out" "$TMP/random.bin")
fi
report "round trip of 64 KB of random bytes (detokenize --input)" "$why"
x "$EMPTY" "$TMP/rnd2.ids" "$TMP/rnd.err" tokenize --threads 1 --input "$TMP/random.bin"
why=$(why_run "$TMP/rnd.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/rnd2.ids" "$TMP/rnd.ids")
report "random bytes: --threads 1 equals the default" "$why"

text hw.ids '15496\r\n\t995  \v\f 0\n'
x "$TMP/hw.ids" "$TMP/dt.out" "$TMP/dt.err" detokenize
why=$(why_run "$TMP/dt.err")
[[ -z $why && $(<"$TMP/dt.out") != 'Hello world!' ]] && why="got '$(excerpt "$TMP/dt.out")', want 'Hello world!'"
report "detokenize accepts any whitespace between ids" "$why"

x "$EMPTY" "$TMP/dt.out" "$TMP/dt.err" detokenize
why=$(why_run "$TMP/dt.err")
[[ -z $why && -s $TMP/dt.out ]] && why="printed bytes for no ids"
report "detokenize of no ids prints nothing" "$why"

# ---------------------------------------------------------------------------------------------
# vocabulary directories: OpenAI naming, Hugging Face naming, --tokenizer specs

cat "$CORPUS"/*.txt >"$TMP/all.txt"
x "$EMPTY" "$TMP/all.default" "$TMP/v.err" tokenize --allow-special --input "$TMP/all.txt"
report "tokenize the whole corpus with the default vocabulary" "$(why_run "$TMP/v.err")"

mkdir "$TMP/hf"
cp "$GPT2/encoder.json" "$TMP/hf/vocab.json"
cp "$GPT2/vocab.bpe" "$TMP/hf/merges.txt"
for spec in "--vocab $GPT2" "--vocab $TMP/hf" "--tokenizer bpe:$GPT2" "--tokenizer bpe:$TMP/hf" "--tokenizer gpt2"; do
  label=${spec//$GPT2/data\/gpt2}
  label=${label//$TMP\/hf/HF-named-dir}
  # shellcheck disable=SC2086
  x "$EMPTY" "$TMP/all.spec" "$TMP/v.err" tokenize $spec --allow-special --input "$TMP/all.txt"
  why=$(why_run "$TMP/v.err")
  [[ -z $why ]] && why=$(why_cmp "$TMP/all.spec" "$TMP/all.default")
  report "tokenize $label gives the default ids" "$why"
done
x "$EMPTY" "$TMP/v.ids" "$TMP/v.err" tokenize --vocab "$TMP/hf" --input "$TS"
why=$(why_run "$TMP/v.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/v.ids" "$CORPUS/tinyshakespeare.ids")
report "tokenize --vocab HF-named-dir tinyshakespeare equals the fixture" "$why"
x "$CORPUS/english_prose.ids" "$TMP/v.out" "$TMP/v.err" detokenize --vocab "$TMP/hf"
why=$(why_run "$TMP/v.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/v.out" "$CORPUS/english_prose.txt")
report "detokenize --vocab HF-named-dir" "$why"
x "$CORPUS/english_prose.ids" "$TMP/v.out" "$TMP/v.err" detokenize --tokenizer "bpe:$GPT2"
why=$(why_run "$TMP/v.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/v.out" "$CORPUS/english_prose.txt")
report "detokenize --tokenizer bpe:data/gpt2" "$why"

# ---------------------------------------------------------------------------------------------
# bpe-train

x "$EMPTY" "$TMP/bt.out" "$TMP/bt.err" bpe-train --input "$TS" --vocab-size 1000 --out "$TMP/bt1" --special '<|endoftext|>'
why=$(why_run "$TMP/bt.err")
if [[ -z $why ]]; then
  if [[ ! -s $TMP/bt1/vocab.json || ! -s $TMP/bt1/merges.txt ]]; then
    why="the output directory lacks vocab.json or merges.txt: $(ls -A "$TMP/bt1" 2>&1 | tr '\n' ' ')"
  elif ! grep -q 'bytes/token' "$TMP/bt.out"; then
    why="output does not mention bytes/token: $(excerpt "$TMP/bt.out")"
  fi
fi
report "bpe-train --vocab-size 1000 writes vocab.json + merges.txt" "$why"

if [[ -s $TMP/bt1/vocab.json ]]; then
  why=$(why_roundtrip "$TS" --vocab "$TMP/bt1")
  [[ -z $why ]] && cmp -s "$TMP/rt.ids" "$CORPUS/tinyshakespeare.ids" &&
    why="the trained vocabulary gives the same ids as GPT-2"
  report "trained vocabulary round-trips tinyshakespeare" "$why"

  why=$(why_roundtrip "$TMP/random.bin" --tokenizer "bpe:$TMP/bt1")
  report "trained vocabulary round-trips random bytes (--tokenizer bpe:DIR)" "$why"

  text eot.txt '<|endoftext|>'
  x "$TMP/eot.txt" "$TMP/bt.ids" "$TMP/bt.err" tokenize --vocab "$TMP/bt1" --allow-special
  why=$(why_run "$TMP/bt.err")
  [[ -z $why && $(<"$TMP/bt.ids") != 999 ]] && why="got '$(excerpt "$TMP/bt.ids")', want the single id 999"
  report "trained vocabulary: <|endoftext|> with --allow-special is id 999" "$why"

  x "$TMP/eot.txt" "$TMP/bt.ids" "$TMP/bt.err" tokenize --vocab "$TMP/bt1"
  why=$(why_run "$TMP/bt.err")
  if [[ -z $why ]]; then
    if grep -qx 999 "$TMP/bt.ids"; then
      why="special token recognised without --allow-special"
    elif [[ $(sort -n "$TMP/bt.ids" | tail -n 1) -gt 998 ]]; then
      why="an id above 998: $(excerpt "$TMP/bt.ids")"
    fi
  fi
  report "trained vocabulary: <|endoftext|> without --allow-special is text" "$why"

  text id999 '999\n'
  x "$TMP/id999" "$TMP/bt.txt" "$TMP/bt.err" detokenize --vocab "$TMP/bt1"
  why=$(why_run "$TMP/bt.err")
  [[ -z $why && $(<"$TMP/bt.txt") != '<|endoftext|>' ]] && why="got '$(excerpt "$TMP/bt.txt")'"
  report "trained vocabulary: detokenize 999 is <|endoftext|>" "$why"
  text id1000 '1000\n'
  expect_error "error: trained vocabulary has no id 1000" "1000" "$TMP/id1000" detokenize --vocab "$TMP/bt1"

  x "$EMPTY" "$TMP/bt2.out" "$TMP/bt2.err" bpe-train --input "$TS" --vocab-size 1000 --out "$TMP/bt2" --special '<|endoftext|>' --threads 1
  why=$(why_run "$TMP/bt2.err")
  [[ -z $why ]] && why=$(why_cmp "$TMP/bt2/vocab.json" "$TMP/bt1/vocab.json")
  [[ -z $why ]] && why=$(why_cmp "$TMP/bt2/merges.txt" "$TMP/bt1/merges.txt")
  report "bpe-train is deterministic (two runs, byte-identical files)" "$why"
fi

expect_error "error: bpe-train --vocab-size 100" "100" "$EMPTY" \
  bpe-train --input "$TS" --vocab-size 100 --out "$TMP/bt_small"
report "bpe-train --vocab-size 100 writes no vocabulary" \
  "$([[ -e $TMP/bt_small/vocab.json ]] && echo "vocab.json was written")"
expect_error "error: bpe-train without --out" "--out" "$EMPTY" \
  bpe-train --input "$TS" --vocab-size 1000
expect_error "error: bpe-train with a missing --input file" "no_such_file" "$EMPTY" \
  bpe-train --input "$TMP/no_such_file.txt" --vocab-size 1000 --out "$TMP/bt_missing"

# ---------------------------------------------------------------------------------------------
# char-vocab

text hw.txt 'hello world'
x "$EMPTY" "$TMP/cv.out" "$TMP/cv.err" char-vocab --input "$TMP/hw.txt" --out "$TMP/cv"
why=$(why_run "$TMP/cv.err")
[[ -z $why && ! -s $TMP/cv/chars.json ]] && why="no chars.json in the output directory"
report "char-vocab writes chars.json" "$why"

text hello.txt 'hello'
x "$TMP/hello.txt" "$TMP/cv.ids" "$TMP/cv.err" tokenize --tokenizer "char:$TMP/cv"
why=$(why_run "$TMP/cv.err")
[[ -z $why && $(tr '\n' ' ' <"$TMP/cv.ids") != '3 2 4 4 5 ' ]] && why="got '$(tr '\n' ' ' <"$TMP/cv.ids")', want '3 2 4 4 5'"
report "char tokenizer: hello -> 3 2 4 4 5" "$why"

x "$TMP/hw.txt" "$TMP/cv.ids" "$TMP/cv.err" tokenize --tokenizer "char:$TMP/cv"
why=$(why_run "$TMP/cv.err")
[[ -z $why && $(tr '\n' ' ' <"$TMP/cv.ids") != '3 2 4 4 5 0 7 5 6 4 1 ' ]] &&
  why="got '$(tr '\n' ' ' <"$TMP/cv.ids")', want '3 2 4 4 5 0 7 5 6 4 1'"
report "char tokenizer: hello world (8 characters, sorted)" "$why"

text cv_ids '3 2 4 4 5'
x "$TMP/cv_ids" "$TMP/cv.txt" "$TMP/cv.err" detokenize --tokenizer "char:$TMP/cv"
why=$(why_run "$TMP/cv.err")
[[ -z $why ]] && why=$(why_cmp "$TMP/cv.txt" "$TMP/hello.txt")
report "char detokenize: 3 2 4 4 5 -> hello" "$why"

x "$TMP/hello.txt" "$TMP/cv.ids" "$TMP/cv.err" tokenize --vocab "$TMP/cv"
why=$(why_run "$TMP/cv.err")
[[ -z $why && $(tr '\n' ' ' <"$TMP/cv.ids") != '3 2 4 4 5 ' ]] && why="got '$(tr '\n' ' ' <"$TMP/cv.ids")', want '3 2 4 4 5'"
report "tokenize --vocab DIR with chars.json" "$why"

for src in "$CORPUS/emoji.txt" "$CORPUS/cjk.txt" "$TS"; do
  name=$(basename "$src" .txt)
  x "$EMPTY" "$TMP/cv.out" "$TMP/cv.err" char-vocab --input "$src" --out "$TMP/cv_$name"
  why=$(why_run "$TMP/cv.err")
  [[ -z $why ]] && why=$(why_roundtrip "$src" --tokenizer "char:$TMP/cv_$name")
  report "char vocabulary round-trips $name" "$why"
done
x "$EMPTY" "$TMP/cv.ids" "$TMP/cv.err" tokenize --tokenizer "char:$TMP/cv_tinyshakespeare" --input "$TS"
why=$(why_run "$TMP/cv.err")
if [[ -z $why ]]; then
  n=$(sort -un "$TMP/cv.ids" | wc -l)
  max=$(sort -n "$TMP/cv.ids" | tail -n 1)
  [[ $n -ne 65 || $max -ne 64 ]] && why="$n distinct ids, largest $max (want 65 and 64)"
fi
report "char vocabulary of tinyshakespeare has 65 characters" "$why"

# ---------------------------------------------------------------------------------------------
# errors: exit non-zero, exactly one stderr line "gpt: error: ...", nothing on stdout

text id50257 '50257\n'
expect_error "error: detokenize unknown id 50257" "50257" "$TMP/id50257" detokenize
text id_ok_bad '15496 50257\n'
expect_error "error: detokenize valid id then unknown id (no partial output)" "50257" "$TMP/id_ok_bad" detokenize
text id_abc '12 abc\n'
expect_error "error: detokenize non-numeric id" "abc" "$TMP/id_abc" detokenize
printf -- '-1\n' >"$TMP/id_neg"
expect_error "error: detokenize negative id" "-1" "$TMP/id_neg" detokenize
text id_big '4294967296\n'
expect_error "error: detokenize id too large for uint32" "4294967296" "$TMP/id_big" detokenize
text id_huge '99999999999999999999999\n'
expect_error "error: detokenize id too large for uint64" "99999999999999999999999" "$TMP/id_huge" detokenize
text id_max '4294967295\n'
expect_error "error: detokenize id 4294967295" "4294967295" "$TMP/id_max" detokenize
text id_junk '12x\n'
expect_error "error: detokenize id with trailing junk" "12x" "$TMP/id_junk" detokenize
text cv_bad '8\n'
expect_error "error: char detokenize unknown id" "8" "$TMP/cv_bad" detokenize --tokenizer "char:$TMP/cv"

expect_error "error: tokenize missing --input file" "no_such_file" "$EMPTY" tokenize --input "$TMP/no_such_file.txt"
expect_error "error: detokenize missing --input file" "no_such_file" "$EMPTY" detokenize --input "$TMP/no_such_file.ids"
mkdir "$TMP/adir"
expect_error "error: tokenize --input is a directory" "adir" "$EMPTY" tokenize --input "$TMP/adir"
expect_error "error: detokenize --input is a directory" "adir" "$EMPTY" detokenize --input "$TMP/adir"
expect_error "error: unknown option" "--bogus" "$EMPTY" tokenize --bogus
expect_error "error: unknown top-level option" "" "$EMPTY" --bogus
expect_error "error: unknown subcommand" "" "$EMPTY" bogus
expect_error "error: --threads -1" "threads" "$EMPTY" tokenize --threads -1

"$G" </dev/null >"$TMP/nosub.out" 2>"$TMP/nosub.err"
rc=$?
why=""
[[ $rc -eq 0 ]] && why="exit status 0"
[[ $rc -ge 128 ]] && why="killed by a signal (exit status $rc)"
report "error: no subcommand exits non-zero" "$why"

expect_error "error: --vocab dir with no vocabulary files" "" "$EMPTY" tokenize --vocab "$TMP/adir"
expect_error "error: --vocab dir that does not exist" "" "$EMPTY" tokenize --vocab "$TMP/no_such_dir"
mkdir "$TMP/half"
cp "$GPT2/encoder.json" "$TMP/half/"
expect_error "error: --vocab dir with encoder.json but no vocab.bpe" "" "$EMPTY" tokenize --vocab "$TMP/half"

# bad_vocab NAME ENCODER_JSON_CONTENT MERGES_CONTENT (printf formats; "-" = copy GPT-2's file)
# shellcheck disable=SC2059
bad_vocab() {
  mkdir -p "$TMP/$1"
  if [[ $2 == - ]]; then cp "$GPT2/encoder.json" "$TMP/$1/encoder.json"; else printf "$2" >"$TMP/$1/encoder.json"; fi
  if [[ $3 == - ]]; then cp "$GPT2/vocab.bpe" "$TMP/$1/vocab.bpe"; else printf "$3" >"$TMP/$1/vocab.bpe"; fi
}
text hi.txt 'hi there\n'
bad_vocab bad_notjson 'this is not json' -
expect_error "error: encoder.json is not JSON" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_notjson"
bad_vocab bad_array '[1, 2, 3]' -
expect_error "error: encoder.json is a JSON array" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_array"
bad_vocab bad_strid '{"a": "x", "b": 1}' '#version: 0.2\n'
expect_error "error: encoder.json id is a string" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_strid"
bad_vocab bad_floatid '{"a": 1.5}' '#version: 0.2\n'
expect_error "error: encoder.json id is not an integer" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_floatid"
bad_vocab bad_negid '{"a": -1}' '#version: 0.2\n'
expect_error "error: encoder.json negative id" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_negid"
bad_vocab bad_dupid '{"a": 0, "b": 0}' '#version: 0.2\n'
expect_error "error: encoder.json duplicate id" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_dupid"
bad_vocab bad_empty '{}' '#version: 0.2\n'
expect_error "error: encoder.json empty object" "encoder.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_empty"
bad_vocab bad_line - '#version: 0.2\n\xc4\xa0 t\nnospaceonthisline\n'
expect_error "error: merges file with a bad line" "vocab.bpe" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_line"
bad_vocab bad_three - '#version: 0.2\n\xc4\xa0 t\na b c\n'
expect_error "error: merges line with three tokens" "vocab.bpe" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_three"
bad_vocab bad_unknown - '#version: 0.2\n\xc4\xa0 t\nzzqq qqzz\n'
expect_error "error: merges reference tokens not in the vocabulary" "vocabulary" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_unknown"
mkdir "$TMP/bad_hf"
printf '[1]' >"$TMP/bad_hf/vocab.json"
cp "$GPT2/vocab.bpe" "$TMP/bad_hf/merges.txt"
expect_error "error: malformed HF-named vocab.json" "vocab.json" "$TMP/hi.txt" tokenize --vocab "$TMP/bad_hf"
expect_error "error: detokenize with a malformed vocabulary" "encoder.json" "$CORPUS/english_prose.ids" detokenize --vocab "$TMP/bad_notjson"

text hellz.txt 'hellz'
expect_error "error: char vocab: character not in the vocabulary" "not in" "$TMP/hellz.txt" tokenize --tokenizer "char:$TMP/cv"
mkdir "$TMP/bad_chars"
printf 'garbage' >"$TMP/bad_chars/chars.json"
expect_error "error: chars.json is not JSON" "chars.json" "$TMP/hello.txt" tokenize --tokenizer "char:$TMP/bad_chars"
expect_error "error: char-vocab of invalid UTF-8" "" "$EMPTY" char-vocab --input "$TMP/random.bin" --out "$TMP/cv_random"
expect_error "error: char-vocab without --out" "--out" "$EMPTY" char-vocab --input "$TMP/hw.txt"
expect_error "error: --tokenizer char without a directory" "char" "$TMP/hello.txt" tokenize --tokenizer char
expect_error "error: --tokenizer char: with a missing directory" "" "$TMP/hello.txt" tokenize --tokenizer "char:$TMP/no_such_dir"
expect_error "error: both --vocab and --tokenizer" "both" "$TMP/hello.txt" tokenize --vocab "$GPT2" --tokenizer gpt2
expect_error "error: detokenize with both --vocab and --tokenizer" "both" "$CORPUS/english_prose.ids" \
  detokenize --vocab "$GPT2" --tokenizer gpt2

# ---------------------------------------------------------------------------------------------
# --batch-jsonl

printf '\xf0\x9f\x98\x80 x' >"$TMP/emoji_x.txt"
x "$TMP/emoji_x.txt" "$TMP/ex.ids" "$TMP/ex.err" tokenize
why=$(why_run "$TMP/ex.err")
[[ -z $why && ! -s $TMP/ex.ids ]] && why="no ids"
report "tokenize of the emoji string (reference for --batch-jsonl)" "$why"
mapfile -t exids <"$TMP/ex.ids"
want2="[$(IFS=,; echo "${exids[*]}")]"

printf '"Hello world"\n"\\ud83d\\ude00 x"\n' >"$TMP/batch.jsonl"
x "$TMP/batch.jsonl" "$TMP/batch.out" "$TMP/batch.err" tokenize --batch-jsonl
why=$(why_run "$TMP/batch.err")
if [[ -z $why ]]; then
  mapfile -t got <"$TMP/batch.out"
  if [[ ${#got[@]} -ne 2 ]]; then
    why="expected 2 lines, got ${#got[@]}: $(excerpt "$TMP/batch.out")"
  elif [[ ${got[0]} != '[15496,995]' ]]; then
    why="line 1 is '${got[0]}', want '[15496,995]'"
  elif [[ ${got[1]} != "$want2" ]]; then
    why="line 2 is '${got[1]}', want '$want2'"
  fi
fi
report "tokenize --batch-jsonl" "$why"

printf '"<|endoftext|>"\n' >"$TMP/batch_eot.jsonl"
x "$TMP/batch_eot.jsonl" "$TMP/batch.out" "$TMP/batch.err" tokenize --batch-jsonl --allow-special
why=$(why_run "$TMP/batch.err")
[[ -z $why && $(<"$TMP/batch.out") != '[50256]' ]] && why="got '$(excerpt "$TMP/batch.out")', want '[50256]'"
report "tokenize --batch-jsonl --allow-special" "$why"

printf '"Hello world"\n{not json\n' >"$TMP/batch_bad.jsonl"
expect_error "error: --batch-jsonl invalid JSON line" "line 2" "$TMP/batch_bad.jsonl" tokenize --batch-jsonl
printf '"Hello world"\n42\n' >"$TMP/batch_num.jsonl"
expect_error "error: --batch-jsonl line that is not a JSON string" "line 2" "$TMP/batch_num.jsonl" tokenize --batch-jsonl

# ---------------------------------------------------------------------------------------------
# models: info, init, logits, eval, and their bad inputs

x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info --preset gpt2
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! grep -q "parameters *124,439,808" "$TMP/info.out" && why="no 124,439,808: $(excerpt "$TMP/info.out")"
report "info --preset gpt2 prints 124,439,808 parameters" "$why"
x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info --preset gpt1
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! grep -q "post (no final LayerNorm)" "$TMP/info.out" && why="not post-LN: $(excerpt "$TMP/info.out")"
[[ -z $why ]] && ! grep -q "context *512" "$TMP/info.out" && why="context is not 512"
report "info --preset gpt1 is post-LN with context 512" "$why"
x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info --preset gpt3-small --band 128
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! grep -q "banded (W = 128)" "$TMP/info.out" && why="band not shown: $(excerpt "$TMP/info.out")"
report "info --preset gpt3-small --band 128" "$why"
# --budget: the JSON line's FLOPs are FLOPs/token x tokens (20 per parameter by default); with
# --measure the time is tokens over the measured speed.
x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info --budget --preset gpt2 --flops 1e21
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! tail -n 1 "$TMP/info.out" | /usr/bin/python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
assert j["parameters"] == 124439808 and j["tokens"] == 20 * 124439808, j
assert abs(j["flops"] - j["flops_per_token"] * j["tokens"]) < 1e-6 * j["flops"], j
assert abs(6 * j["optimal_parameters"] * j["optimal_tokens"] - 1e21) < 1e12, j
assert j["memory_bytes"] > 4 * 4 * 124439808 and j["seconds"] is None, j' 2>"$TMP/py.err" &&
  why="JSON line: $(tail -n 1 "$TMP/info.out") $(tail -n 2 "$TMP/py.err")"
report "info --budget: FLOPs = FLOPs/token x 20 tokens per parameter; compute-optimal for --flops" "$why"
x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info --budget --n-layer 1 --n-head 2 --n-embd 32 --context 64 \
  -b 2 -t 16 --tokens 1e6 --measure
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! tail -n 1 "$TMP/info.out" | /usr/bin/python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
assert j["tokens_per_s"] > 0 and abs(j["seconds"] - 1e6 / j["tokens_per_s"]) < 1e-6 * j["seconds"], j' &&
  why="JSON line: $(tail -n 1 "$TMP/info.out")"
[[ -z $why ]] && ! grep -q "^time here" "$TMP/info.out" && why="no time line: $(excerpt "$TMP/info.out")"
report "info --budget --measure: the time is the tokens at the measured speed" "$why"
expect_error "error: --measure without --budget" "--budget" "$EMPTY" info --preset gpt2 --measure
expect_error "error: --budget --tokens -5" "--tokens" "$EMPTY" info --budget --preset gpt2 --tokens -5
expect_error "error: --budget -t beyond the context" "context" "$EMPTY" info --budget --preset gpt2 -t 2048
expect_error "error: unknown preset" "gpt5" "$EMPTY" info --preset gpt5
expect_error "error: n_embd not a multiple of n_head" "multiple" "$EMPTY" info --n-head 5
expect_error "error: --ln sideways" "--ln" "$EMPTY" info --ln sideways
expect_error "error: --band on a dense model" "--band" "$EMPTY" info --preset gpt2 --band 4

# no shape at all would be GPT-2 124M (500 MB): an error naming the way to ask for it, nothing written
expect_error "error: init without a shape or preset" "--preset" "$EMPTY" init --out "$TMP/noshape"
why=""; [[ -e $TMP/noshape ]] && why="$TMP/noshape was written"
report "init without a shape writes nothing" "$why"

M=$TMP/tiny
x "$EMPTY" "$TMP/init.out" "$TMP/init.err" init --n-layer 2 --n-head 2 --n-embd 16 --context 32 --seed 3 --out "$M"
why=$(why_run "$TMP/init.err")
for f in config.json model.safetensors vocab.json merges.txt; do
  [[ -z $why && ! -s $M/$f ]] && why="no $f written"
done
report "init writes a model directory with the GPT-2 vocabulary" "$why"
x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info --model "$M"
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! grep -q "n_embd *16" "$TMP/info.out" && why="wrong config: $(excerpt "$TMP/info.out")"
report "info --model reads it back" "$why"

head -c 3000 "$TS" >"$TMP/ts3k.txt"
x "$EMPTY" "$TMP/eval.out" "$TMP/eval.err" eval --model "$M" --text "$TMP/ts3k.txt" --seq-len 32 --stride 16 -b 3
why=$(why_run "$TMP/eval.err")
last=$(tail -n 1 "$TMP/eval.out")
if [[ -z $why ]]; then
  if ! grep -qE '^\{.*"tokens": ?[0-9]+.*\}$' <<<"$last" || ! grep -q '"perplexity"' <<<"$last"; then
    why="last line is not the JSON result: $last"
  fi
fi
report "eval --text: JSON result on the last line" "$why"
# the same tokens as ids give the same result; tokens = ids - 1
"$G" tokenize --input "$TMP/ts3k.txt" >"$TMP/ts3k.ids" 2>/dev/null
n=$(wc -l <"$TMP/ts3k.ids")
x "$EMPTY" "$TMP/eval2.out" "$TMP/eval2.err" eval --model "$M" --ids "$TMP/ts3k.ids" --seq-len 32 --stride 16 -b 3
why=$(why_run "$TMP/eval2.err")
[[ -z $why && $(tail -n 1 "$TMP/eval2.out") != "$last" ]] && why="ids and text differ: $(tail -n 1 "$TMP/eval2.out") vs $last"
[[ -z $why ]] && ! grep -q "\"tokens\":$((n - 1))[,}]" <<<"$last" && why="expected $((n - 1)) scored tokens: $last"
report "eval --ids equals eval --text, scoring every token but the first" "$why"

expect_error "error: eval of an empty file" "empty" "$EMPTY" eval --model "$M" --ids "$EMPTY"
text one.ids "7\n"
expect_error "error: eval of one token" "2" "$EMPTY" eval --model "$M" --ids "$TMP/one.ids"
text big.ids "1 2 50257 3\n"
expect_error "error: eval of an id >= vocab" "50257" "$EMPTY" eval --model "$M" --ids "$TMP/big.ids"
expect_error "error: eval --seq-len beyond the context" "context" "$EMPTY" eval --model "$M" --ids "$TMP/ts3k.ids" --seq-len 64
expect_error "error: eval without input" "--text" "$EMPTY" eval --model "$M"
expect_error "error: eval of a missing model" "nonexistent" "$EMPTY" eval --model "$TMP/nonexistent" --ids "$TMP/ts3k.ids"

text lg.ids "1 2 3\n4 5 6\n"
text lg.tg "2 3 -1\n5 6 7\n"
x "$EMPTY" "$TMP/lg.out" "$TMP/lg.err" logits --model "$M" --ids "$TMP/lg.ids" --targets "$TMP/lg.tg" --grads --out "$TMP/lg.st"
why=$(why_run "$TMP/lg.err")
[[ -z $why && ! -s $TMP/lg.st ]] && why="no output file"
report "logits --grads writes a safetensors file" "$why"
text ragged.ids "1 2 3\n4 5\n"
expect_error "error: logits with ragged rows" "same length" "$EMPTY" logits --model "$M" --ids "$TMP/ragged.ids" --out "$TMP/x.st"
expect_error "error: logits --grads without targets" "--targets" "$EMPTY" logits --model "$M" --ids "$TMP/lg.ids" --grads --out "$TMP/x.st"

# llm.c export and import give back the same weights, byte for byte
x "$EMPTY" "$TMP/cv.out" "$TMP/cv.err" convert --model "$M" --to-llmc "$TMP/tiny.bin"
why=$(why_run "$TMP/cv.err")
if [[ -z $why ]]; then
  x "$EMPTY" "$TMP/cv.out" "$TMP/cv.err" convert --from-llmc "$TMP/tiny.bin" --out "$TMP/back"
  why=$(why_run "$TMP/cv.err")
fi
[[ -z $why ]] && why=$(why_cmp "$TMP/back/model.safetensors" "$M/model.safetensors")
report "convert: model directory -> llm.c -> model directory is identical" "$why"
head -c 2000 "$TMP/tiny.bin" >"$TMP/cut.bin"
expect_error "error: truncated llm.c checkpoint" "cut.bin" "$EMPTY" convert --from-llmc "$TMP/cut.bin" --out "$TMP/never"
why=""
[[ -e $TMP/never/model.safetensors ]] && why="model.safetensors exists"
report "a failed convert writes no model" "$why"

# damaged checkpoints: one clear line, never a crash
cp -r "$M" "$TMP/cut"
head -c 5000 "$M/model.safetensors" >"$TMP/cut/model.safetensors"
expect_error "error: truncated model.safetensors" "model.safetensors" "$EMPTY" eval --model "$TMP/cut" --ids "$TMP/ts3k.ids"
cp -r "$M" "$TMP/junk"
printf 'not a safetensors file at all' >"$TMP/junk/model.safetensors"
expect_error "error: junk model.safetensors" "model.safetensors" "$EMPTY" info --model "$TMP/junk"
cp -r "$M" "$TMP/wrongcfg"
sed -i 's/"n_embd": 16/"n_embd": 32/' "$TMP/wrongcfg/config.json"
expect_error "error: config.json does not match the weights" "does not match" "$EMPTY" info --model "$TMP/wrongcfg"
cp -r "$M" "$TMP/badjson"
printf '{"n_layer": ' >"$TMP/badjson/config.json"
expect_error "error: broken config.json" "config.json" "$EMPTY" info --model "$TMP/badjson"

x "$EMPTY" "$TMP/bf.out" "$TMP/bf.err" bench forward --n-layer 2 --n-head 2 --n-embd 32 --vocab-size 100 -b 2 -t 16 --steps 2 --warmup 0
why=$(why_run "$TMP/bf.err")
[[ -z $why ]] && ! grep -qE '"gflops_per_s": ?[0-9]' <<<"$(tail -n 1 "$TMP/bf.out")" && why="no JSON figures"
report "bench forward on a tiny model" "$why"
x "$EMPTY" "$TMP/bt.out" "$TMP/bt.err" bench train-step --n-layer 2 --n-head 2 --n-embd 32 --vocab-size 100 -b 2 -t 16 --steps 2 --warmup 0
why=$(why_run "$TMP/bt.err")
[[ -z $why ]] && ! grep -qE '"tokens_per_s": ?[0-9]' <<<"$(tail -n 1 "$TMP/bt.out")" && why="no JSON figures"
report "bench train-step on a tiny model" "$why"

# gpt quantize: bf16 and q8 directories that eval reads; bad requests are one clear line
for qt in bf16 q8; do
  x "$EMPTY" "$TMP/q.out" "$TMP/q.err" quantize --model "$M" --out "$TMP/tiny-$qt" --type $qt
  why=$(why_run "$TMP/q.err")
  [[ -z $why ]] && ! grep -q "^after: .*$qt" "$TMP/q.out" && why="no 'after:' line: $(excerpt "$TMP/q.out")"
  [[ -z $why ]] && x "$EMPTY" "$TMP/q.out" "$TMP/q.err" eval --model "$TMP/tiny-$qt" --ids "$TMP/ts3k.ids" --seq-len 32 && why=$(why_run "$TMP/q.err")
  [[ -z $why ]] && ! grep -qE '"loss": ?[0-9]' <<<"$(tail -n 1 "$TMP/q.out")" && why="eval printed no loss"
  report "quantize --type $qt, then eval the directory" "$why"
done
expect_error "error: quantize to an unknown type" "q4" "$EMPTY" quantize --model "$M" --out "$TMP/never" --type q4
expect_error "error: quantize to f32" "bf16 or q8" "$EMPTY" quantize --model "$M" --out "$TMP/never" --type f32
expect_error "error: quantize onto its own directory" "differ" "$EMPTY" quantize --model "$M" --out "$M" --type q8
expect_error "error: quantize a missing model" "nonexistent" "$EMPTY" quantize --model "$TMP/nonexistent" --out "$TMP/never" --type q8
cp -r "$TMP/tiny-q8" "$TMP/q8-block64"
sed -i 's/"gptcpp_quant_block": 32/"gptcpp_quant_block": 64/' "$TMP/q8-block64/config.json"
expect_error "error: q8 directory with an unsupported block size" "block" "$EMPTY" eval --model "$TMP/q8-block64" --ids "$TMP/ts3k.ids"
x "$EMPTY" "$TMP/bp.out" "$TMP/bp.err" bench packed --type q8 --n 3 --in 40 --out 50 --hot --repeat 1
why=$(why_run "$TMP/bp.err")
[[ -z $why ]] && ! grep -qE '"gb_per_s": ?[0-9]' <<<"$(tail -n 1 "$TMP/bp.out")" && why="no JSON figures"
report "bench packed on a small matrix" "$why"

# ---------------------------------------------------------------------------------------------
# help, info, bench

# expect_help NAME WORDS... -- ARGS...: gpt ARGS exits 0 and stdout mentions every word.
expect_help() {
  local name=$1 words=() w why=""
  shift
  while [[ $1 != -- ]]; do words+=("$1"); shift; done
  shift
  x "$EMPTY" "$TMP/help.out" "$TMP/help.err" "$@"
  why=$(why_run "$TMP/help.err")
  if [[ -z $why ]]; then
    for w in "${words[@]}"; do
      if ! grep -qF -- "$w" "$TMP/help.out"; then
        why="does not mention $w"
        break
      fi
    done
  fi
  report "$name" "$why"
}
expect_help "gpt --help" tokenize detokenize bpe-train char-vocab bench info init logits eval convert -- --help
expect_help "gpt tokenize --help" --allow-special --vocab --tokenizer --input --output --stats --batch-jsonl --threads -- tokenize --help
expect_help "gpt detokenize --help" --vocab --tokenizer --input -- detokenize --help
expect_help "gpt bpe-train --help" --input --vocab-size --out --special -- bpe-train --help
expect_help "gpt char-vocab --help" --input --out -- char-vocab --help
expect_help "gpt bench --help" tokenizer -- bench --help
expect_help "gpt bench tokenizer --help" --bytes --repeat --input -- bench tokenizer --help
expect_help "gpt info --help" "gpt info" --help -- info --help

x "$EMPTY" "$TMP/info.out" "$TMP/info.err" info
why=$(why_run "$TMP/info.err")
[[ -z $why ]] && ! grep -q '^cpu:' "$TMP/info.out" && why="no line starting with cpu: $(excerpt "$TMP/info.out")"
report "gpt info" "$why"

"$G" bench tokenizer --bytes 200000 --repeat 1 </dev/null >"$TMP/bench.out" 2>"$TMP/bench.err"
rc=$?
why=""
if [[ $rc -ne 0 ]]; then
  why="exit status $rc, stderr: $(excerpt "$TMP/bench.err")"
else
  last=$(tail -n 1 "$TMP/bench.out")
  if [[ $last != '{'*'}' ]]; then
    why="last line is not a JSON object: $last"
  elif ! grep -qE '"mb_per_s_1t": ?[0-9]' <<<"$last"; then
    why="no numeric mb_per_s_1t: $last"
  elif ! grep -qE '"mb_per_s_all": ?[0-9]' <<<"$last"; then
    why="no numeric mb_per_s_all: $last"
  fi
fi
report "gpt bench tokenizer --bytes 200000 --repeat 1" "$why"

cli_finish
