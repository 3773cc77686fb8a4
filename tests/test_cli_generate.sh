#!/usr/bin/env bash
# The command-line contract of `gpt generate` and `gpt bench generate`: the three formats,
# determinism with --seed, greedy equivalences, the KV cache against --no-kv-cache, stop strings,
# UTF-8 validity of the streamed text, and bad input (one "gpt: error:" line, non-zero exit).
#
# Usage: bash tests/test_cli_generate.sh PATH_TO_gpt
#
# Prints one line per check ("ok - NAME" or "not ok - NAME: DETAILS") and ends with
# "N passed, M failed"; exits 1 if any check failed. Needs bash, coreutils, grep and iconv.

if [[ $# -lt 1 ]]; then
  echo "usage: bash $0 PATH_TO_gpt" >&2
  exit 2
fi
export LC_ALL=C
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # tiny models: threads only add overhead
G=$1

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_cli_generate

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

# A small model with the GPT-2 vocabulary: random weights produce random tokens, many of them
# pieces of multi-byte characters, which is what the UTF-8 checks want.
M=$TMP/model
x "$TMP/init.out" "$TMP/init.err" init --n-layer 2 --n-head 2 --n-embd 32 --context 64 --seed 5 --out "$M"
why=$(why_run "$TMP/init.err")
report "setup: gpt init a small model" "$why"
[[ -n $why ]] && { echo "$PASS passed, $FAIL failed"; exit 1; }
gen() { x "$TMP/$1.out" "$TMP/$1.err" generate --model "$M" "${@:2}"; }

# ---- text -------------------------------------------------------------------------------------
gen t1 --prompt "Once upon a time" -n 40 --seed 7 --temperature 1.5 --top-k 0
why=$(why_run "$TMP/t1.err")
[[ -z $why && ! -s $TMP/t1.out ]] && why="no output"
[[ -z $why && $(tail -c 1 "$TMP/t1.out" | od -An -c | tr -d ' ') != '\n' ]] && why="no final newline"
report "text: generates and ends with a newline" "$why"
gen t2 --prompt "Once upon a time" -n 40 --seed 7 --temperature 1.5 --top-k 0
report "text: the same --seed gives the same text" "$(why_run "$TMP/t2.err")$(why_same "$TMP/t1.out" "$TMP/t2.out")"
gen t3 --prompt "Once upon a time" -n 40 --seed 8 --temperature 1.5 --top-k 0
report "text: another --seed gives another text" "$(why_differ "$TMP/t1.out" "$TMP/t3.out")"

# Streamed text is valid UTF-8 however the tokens split characters: 8 samples of 200 tokens
# each, at a high temperature, over the whole vocabulary.
gen u1 --prompt "é" -n 200 --seed 1 --temperature 3 --top-k 0 --num-samples 8
why=$(why_run "$TMP/u1.err")
[[ -z $why ]] && ! iconv -f UTF-8 -t UTF-8 "$TMP/u1.out" >/dev/null 2>&1 && why="not valid UTF-8"
[[ -z $why && $(grep -c '^---------------$' "$TMP/u1.out") -ne 8 ]] && why="expected 8 sample separators"
[[ -z $why ]] && ! grep -qP '[\x80-\xff]' "$TMP/u1.out" && why="no multi-byte character at all: the check proved nothing"
report "text: valid UTF-8 over 8 x 200 random tokens, samples separated" "$why"
gen u2 --prompt "é" -n 200 --seed 1 --temperature 3 --top-k 0 --num-samples 8 --format jsonl
why=$(why_run "$TMP/u2.err")
[[ -z $why ]] && ! iconv -f UTF-8 -t UTF-8 "$TMP/u2.out" >/dev/null 2>&1 && why="not valid UTF-8"
report "jsonl: valid UTF-8 too" "$why"

# ---- ids and jsonl ------------------------------------------------------------------------------
gen i1 --prompt "Hello" -n 12 --seed 3 --num-samples 3 --format ids
why=$(why_run "$TMP/i1.err")
[[ -z $why && $(wc -l <"$TMP/i1.out") -ne 3 ]] && why="expected 3 lines: $(excerpt "$TMP/i1.out")"
[[ -z $why ]] && grep -vqE '^[0-9]+( [0-9]+)*$' "$TMP/i1.out" && why="a line is not space-separated ids"
[[ -z $why && $(head -n 1 "$TMP/i1.out" | wc -w) -ne 12 ]] && why="expected 12 ids on line 1"
report "ids: one line of ids per sample" "$why"
gen j1 --prompt "Hello" -n 12 --seed 3 --num-samples 3 --format jsonl
why=$(why_run "$TMP/j1.err")
re='^\{"sample":[0-2],"step":([0-9]|1[01]),"id":[0-9]+,"text":"([^"\\]|\\.)*","logprob":-[0-9.e+-]+\}$'
[[ -z $why && $(wc -l <"$TMP/j1.out") -ne 36 ]] && why="expected 36 lines"
[[ -z $why ]] && grep -vqE "$re" "$TMP/j1.out" && why="a line is not {sample, step, id, text, logprob}: $(grep -vE "$re" "$TMP/j1.out" | head -n 1)"
if [[ -z $why ]]; then
  for s in 0 1 2; do
    grep "^{\"sample\":$s," "$TMP/j1.out" | grep -oE '"id":[0-9]+' | cut -d: -f2 | tr '\n' ' ' | sed 's/ $/\n/' >>"$TMP/j1.ids"
  done
  why=$(why_same "$TMP/j1.ids" "$TMP/i1.out")
fi
report "jsonl: one object per token with the documented keys, the same ids as --format ids" "$why"
gen j2 --prompt "Hello" -n 4 --seed 3 --format jsonl --show-probs 3
why=$(why_run "$TMP/j2.err")
re='^\{"sample":0,"step":[0-3],"id":[0-9]+,"text":"([^"\\]|\\.)*","logprob":-[0-9.e+-]+,"top":\[(\[[0-9]+,-[0-9.e+-]+\],?){3}\]\}$'
[[ -z $why ]] && grep -vqE "$re" "$TMP/j2.out" && why="bad line: $(grep -vE "$re" "$TMP/j2.out" | head -n 1)"
report "jsonl --show-probs 3: a top list of three [id, logprob]" "$why"
gen p1 --prompt "Hello" -n 4 --seed 3 --show-probs 5
why=$(why_run "$TMP/p1.err")
[[ -z $why && $(grep -c '^step .*->' "$TMP/p1.out") -ne 4 ]] && why="expected 4 step lines: $(excerpt "$TMP/p1.out")"
report "text --show-probs: one line per step with the candidates" "$why"

# ---- greedy, caches, beam ---------------------------------------------------------------------
gen g1 --prompt "The" -n 90 --greedy --seed 1 --format ids
gen g2 --prompt "The" -n 90 --greedy --seed 2 --format ids
report "greedy: the seed does not matter" "$(why_run "$TMP/g2.err")$(why_same "$TMP/g1.out" "$TMP/g2.out")"
gen g3 --prompt "The" -n 90 --temperature 0 --format ids
report "temperature 0 is greedy" "$(why_run "$TMP/g3.err")$(why_same "$TMP/g3.out" "$TMP/g1.out")"
gen g4 --prompt "The" -n 90 --top-k 1 --temperature 2 --seed 9 --format ids
report "top-k 1 is greedy" "$(why_run "$TMP/g4.err")$(why_same "$TMP/g4.out" "$TMP/g1.out")"
gen g5 --prompt "The" -n 90 --greedy --no-kv-cache --format ids
report "greedy: --no-kv-cache gives the same 90 tokens (the 64-token window slides)" \
  "$(why_run "$TMP/g5.err")$(why_same "$TMP/g5.out" "$TMP/g1.out")"
gen s1 --prompt "The" -n 80 --seed 4 --top-p 0.9 --repetition-penalty 1.3 --num-samples 2 --format ids
gen s2 --prompt "The" -n 80 --seed 4 --top-p 0.9 --repetition-penalty 1.3 --num-samples 2 --format ids --no-kv-cache
report "sampling: --no-kv-cache gives the same samples" "$(why_run "$TMP/s2.err")$(why_same "$TMP/s1.out" "$TMP/s2.out")"
gen b1 --prompt "The" -n 20 --beam 3 --num-samples 2 --format ids
why=$(why_run "$TMP/b1.err")
[[ -z $why && $(wc -l <"$TMP/b1.out") -ne 2 ]] && why="expected 2 hypotheses"
gen b2 --prompt "The" -n 20 --beam 3 --num-samples 2 --format ids --no-kv-cache
[[ -z $why ]] && why=$(why_same "$TMP/b1.out" "$TMP/b2.out")
report "beam: two hypotheses, the same without the cache" "$why"

# ---- --device: the same Decoder on another backend (the staged CPU one: device memory, CPU kernels) -
# Greedy with a repetition penalty, so that the tokens vary (plain greedy soon repeats one).
gen d1 --prompt "The" -n 90 --greedy --repetition-penalty 3 --format ids
gen d2 --prompt "The" -n 90 --greedy --repetition-penalty 3 --format ids --device cpu-staged
why=$(why_run "$TMP/d2.err")$(why_same "$TMP/d1.out" "$TMP/d2.out")
[[ -z $why && $(tr ' ' '\n' <"$TMP/d1.out" | sort -u | wc -l) -lt 30 ]] && why="fewer than 30 distinct tokens: proves little"
report "--device cpu-staged: greedy gives --device cpu's 90 tokens (the 64-token window slides)" "$why"
gen d3 --prompt "The" -n 20 --beam 3 --num-samples 2 --format ids --device cpu-staged
report "--device cpu-staged: beam search gives --device cpu's hypotheses" "$(why_run "$TMP/d3.err")$(why_same "$TMP/d3.out" "$TMP/b1.out")"
expect_error "error: unknown device" "tpu" generate --model "$M" --device tpu --prompt hi
# q8 weights are weight handles any backend with kernels for them holds: the staged one does.
gen d4 --prompt "The" -n 40 --greedy --repetition-penalty 3 --format ids --weights q8
gen d5 --prompt "The" -n 40 --greedy --repetition-penalty 3 --format ids --weights q8 --device cpu-staged
report "--device cpu-staged --weights q8: the tokens of --device cpu" "$(why_run "$TMP/d5.err")$(why_same "$TMP/d4.out" "$TMP/d5.out")"

# ---- stop strings, prompts ------------------------------------------------------------------------
gen st0 --prompt "The" -n 30 --greedy
full=$(<"$TMP/st0.out")
stop=${full:12:4}
gen st1 --prompt "The" -n 30 --greedy --stop "$stop" --stop "never-there"
want="${full%%"$stop"*}"
why=$(why_run "$TMP/st1.err")
[[ -z $why && "$(<"$TMP/st1.out")" != "$want" ]] && why="expected '$want', got '$(<"$TMP/st1.out")' (stop '$stop')"
report "--stop: the text ends just before the first stop string" "$why"
gen e1 --prompt "" -n 5 --seed 2 --format ids
gen e2 --prompt-ids "50256" -n 5 --seed 2 --format ids
report "an empty prompt starts from <|endoftext|>" "$(why_run "$TMP/e1.err")$(why_same "$TMP/e1.out" "$TMP/e2.out")"
printf 'Hello' >"$TMP/prompt.txt"
gen f1 --prompt-file "$TMP/prompt.txt" -n 5 --seed 2 --format ids
gen f2 --prompt "Hello" -n 5 --seed 2 --format ids
report "--prompt-file equals --prompt" "$(why_run "$TMP/f1.err")$(why_same "$TMP/f1.out" "$TMP/f2.out")"
"$G" generate --model "$M" -n 5 --seed 2 --format ids <"$TMP/prompt.txt" >"$TMP/f3.out" 2>"$TMP/f3.err"
RC=$?
report "the prompt from standard input" "$(why_run "$TMP/f3.err")$(why_same "$TMP/f3.out" "$TMP/f2.out")"
for i in $(seq 200); do printf 'word%d ' "$i"; done >"$TMP/long.txt"
gen l1 --prompt-file "$TMP/long.txt" -n 3 --seed 1
why=""
[[ $RC -ne 0 ]] && why="exit status $RC"
[[ -z $why ]] && ! grep -q '^gpt: warning: .*context' "$TMP/l1.err" && why="no warning: $(excerpt "$TMP/l1.err")"
report "a prompt longer than the context: its last tokens, with a warning" "$why"

# ---- bad input --------------------------------------------------------------------------------
expect_error "error: negative temperature" "temperature" generate --model "$M" -t -0.5
expect_error "error: top-p 0" "top-p" generate --model "$M" --top-p 0
expect_error "error: top-p above 1" "top-p" generate --model "$M" --top-p 1.5
expect_error "error: negative top-k" "top-k" generate --model "$M" --top-k -1
expect_error "error: min-p above 1" "min-p" generate --model "$M" --min-p 1.5
expect_error "error: repetition penalty 0" "repetition" generate --model "$M" --repetition-penalty 0
expect_error "error: --beam with --temperature" "--temperature" generate --model "$M" --beam 2 --temperature 0.7
expect_error "error: --beam with --top-p" "--top-p" generate --model "$M" --beam 2 --top-p 0.9
expect_error "error: --greedy with --top-k" "--top-k" generate --model "$M" --greedy --top-k 5
expect_error "error: more samples than beams" "beam" generate --model "$M" --beam 2 --num-samples 3
expect_error "error: unknown format" "format" generate --model "$M" --format xml
expect_error "error: unknown weight type" "q4" generate --model "$M" --weights q4
expect_error "error: two prompts" "prompt" generate --model "$M" --prompt a --prompt-ids 1
expect_error "error: prompt id beyond the vocabulary" "50257" generate --model "$M" --prompt-ids "50257"
expect_error "error: prompt ids that are not ids" "x" generate --model "$M" --prompt-ids "1 x"
expect_error "error: missing model directory" "nonexistent" generate --model "$TMP/nonexistent" --prompt hi
mkdir -p "$TMP/broken" && cp -r "$M"/. "$TMP/broken/" && printf '{"n_layer": ' >"$TMP/broken/config.json"
expect_error "error: a model directory that does not load" "config.json" generate --model "$TMP/broken" --prompt hi
expect_error "error: no model" "model" generate --prompt hi

gen s0 --prompt "The" -n 20 --seed 3 --format ids
# ---- generation and eval on packed and quantized weights ----------------------------------------
for w in f32 bf16 q8; do
  gen w_$w --prompt "The" -n 20 --seed 3 --weights "$w" --format ids
  report "generate --weights $w" "$(why_run "$TMP/w_$w.err")"
done
report "generate --weights f32 equals the plain model" "$(why_same "$TMP/w_f32.out" "$TMP/s0.out")"
x "$TMP/q.out" "$TMP/q.err" quantize --model "$M" --out "$TMP/q8" --type q8
why=$(why_run "$TMP/q.err")
x "$TMP/qg.out" "$TMP/qg.err" generate --model "$TMP/q8" --prompt "The" -n 20 --seed 3 --format ids
[[ -z $why ]] && why=$(why_run "$TMP/qg.err")$(why_same "$TMP/qg.out" "$TMP/w_q8.out")
report "generate from a q8 directory equals --weights q8" "$why"
expect_error "error: --weights that contradict a quantized directory" "q8" generate --model "$TMP/q8" --weights bf16 --prompt a
for i in $(seq 300); do printf '%d ' $(((i * 7919) % 50257)); done >"$TMP/eval.ids"
x "$TMP/ev.out" "$TMP/ev.err" eval --model "$M" --ids "$TMP/eval.ids" --stride 32
why=$(why_run "$TMP/ev.err")
x "$TMP/evf.out" "$TMP/evf.err" eval --model "$M" --ids "$TMP/eval.ids" --stride 32 --weights f32
[[ -z $why ]] && why=$(why_run "$TMP/evf.err")
loss() { tail -n 1 "$1" | grep -oE '"loss":[-0-9.e+]+' | cut -d: -f2; }
if [[ -z $why ]]; then
  a=$(loss "$TMP/ev.out") b=$(loss "$TMP/evf.out")
  awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }' || why="losses differ: $a vs $b"
fi
[[ -z $why ]] && ! grep -q '^weights: *f32' "$TMP/evf.out" && why="no weights line: $(excerpt "$TMP/evf.out")"
report "eval --weights f32 (the KV-cache decoder) equals eval on the training network" "$why"
x "$TMP/evq.out" "$TMP/evq.err" eval --model "$TMP/q8" --ids "$TMP/eval.ids" --stride 32
why=$(why_run "$TMP/evq.err")
if [[ -z $why ]]; then
  a=$(loss "$TMP/ev.out") b=$(loss "$TMP/evq.out")
  awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d != 0 && d < 0.05 && d > -0.05) }' || why="q8 loss $b is not near (but not equal to) the f32 loss $a"
fi
[[ -z $why ]] && ! grep -q '^weights: *q8' "$TMP/evq.out" && why="no weights line: $(excerpt "$TMP/evq.out")"
report "eval of a q8 directory runs packed, its loss close to f32's" "$why"

# ---- gpt bench generate ---------------------------------------------------------------------------
x "$TMP/bench.out" "$TMP/bench.err" bench generate --n-layer 2 --n-head 2 --n-embd 32 --context 64 \
  --prompt-tokens 16 --new-tokens 4 --batch 2 --repeat 1
why=$(why_run "$TMP/bench.err")
last=$(tail -n 1 "$TMP/bench.out")
[[ -z $why && $last != *'"prefill_tokens_per_s":'* ]] && why="last line has no prefill_tokens_per_s: $last"
[[ -z $why && $last != *'"decode_tokens_per_s":'* ]] && why="last line has no decode_tokens_per_s: $last"
report "bench generate: JSON with prefill and decode tokens/s on the last line" "$why"
expect_error "error: bench generate beyond the context" "context" bench generate --n-layer 1 --n-head 1 \
  --n-embd 8 --context 16 --prompt-tokens 12 --new-tokens 8
x "$TMP/benchd.out" "$TMP/benchd.err" bench generate --device cpu-staged --n-layer 2 --n-head 2 --n-embd 32 \
  --context 64 --prompt-tokens 16 --new-tokens 4 --batch 3 --repeat 1
why=$(why_run "$TMP/benchd.err")
last=$(tail -n 1 "$TMP/benchd.out")
for key in prefill_tokens_per_s decode_tokens_per_s decode_tokens_per_s_batch1; do
  [[ -z $why && $last != *"\"$key\":"* ]] && why="last line has no $key: $last"
done
[[ -z $why ]] && ! grep -q '^decode: *3 x 4 tokens' "$TMP/benchd.out" && why="no batch-3 decode line: $(excerpt "$TMP/benchd.out")"
[[ -z $why ]] && ! grep -q '^ *batch 1: 4 tokens' "$TMP/benchd.out" && why="no batch-1 decode line: $(excerpt "$TMP/benchd.out")"
report "bench generate --device: decode tokens/s at batch 1 and at --batch, JSON last" "$why"

# A model with more output rows than its vocabulary has tokens (--vocab-size beyond a character
# vocabulary) samples only tokens the vocabulary can decode, with sampling and with beams.
printf 'abcdefgh ' > "$TMP/chars.txt"
x "$TMP/cv.out" "$TMP/cv.err" char-vocab --input "$TMP/chars.txt" --out "$TMP/cv"
x "$TMP/wide.out" "$TMP/wide.err" init --n-layer 1 --n-head 2 --n-embd 16 --context 32 --vocab-size 500 \
  --tokenizer "char:$TMP/cv" --seed 3 --out "$TMP/wide"
why=$(why_run "$TMP/wide.err")
for mode in "--seed 1" "--greedy" "--beam 3"; do
  x "$TMP/w.out" "$TMP/w.err" generate --model "$TMP/wide" --prompt "abc" -n 20 --format ids $mode
  w=$(why_run "$TMP/w.err")
  [[ -z $w ]] && awk '{for (i = 1; i <= NF; i++) if ($i + 0 >= 9) bad = 1} END {exit bad}' "$TMP/w.out" ||
    w="${w}ids outside the 9-token vocabulary: $(excerpt "$TMP/w.out")"
  why="$why$w"
done
report "a model wider than its vocabulary generates only decodable tokens" "$why"
x "$TMP/cw.out" "$TMP/cw.err" init --n-layer 1 --n-head 2 --n-embd 16 --context 32 --tokenizer "char:$TMP/cv" --out "$TMP/cw"
why=$(why_run "$TMP/cw.err")
grep -Eq '"vocab_size": 9(,|$)' "$TMP/cw/config.json" || why="${why}config.json: $(grep vocab_size "$TMP/cw/config.json")"
report "gpt init --tokenizer sizes the model to the vocabulary" "$why"

cli_finish
