#!/usr/bin/env bash
# gpt eval --choices (multiple choice, zero- and few-shot) and gpt eval --rouge: the JSON lines,
# the predictions file, hand-computed ROUGE values, and one-line errors for bad input.
# Usage: bash tests/test_cli_taskeval.sh PATH_TO_gpt
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_gpt_arg "$@"
cli_tmpdir gpt_cli_taskeval

# expect_error NAME SUBSTRING ARGS...: non-zero exit, no stdout, one "gpt: error:" line naming SUBSTRING.
expect_error() {
  local name=$1 sub=$2 why=""
  shift 2
  x "$TMP/e.out" "$TMP/e.err" "$@"
  if [[ $RC -eq 0 || $RC -ge 128 ]]; then
    why="exit status $RC"
  elif [[ -s $TMP/e.out ]]; then
    why="stdout not empty: $(excerpt "$TMP/e.out")"
  elif [[ $(wc -l <"$TMP/e.err") -ne 1 ]] || ! grep -q '^gpt: error: ' "$TMP/e.err"; then
    why="not one 'gpt: error:' line: $(excerpt "$TMP/e.err")"
  elif ! grep -qF -- "$sub" "$TMP/e.err"; then
    why="message does not mention '$sub': $(excerpt "$TMP/e.err")"
  fi
  report "$name" "$why"
}

M=$TMP/m
x "$TMP/init.out" "$TMP/init.err" init --n-layer 2 --n-head 2 --n-embd 16 --context 32 --seed 3 --out "$M"
report "init a tiny model" "$(why_run "$TMP/init.err")"

cat >"$TMP/c.jsonl" <<'J'
{"context": "The capital of France is", "choices": [" Paris", " a banana split with cream"], "answer": 0}
{"ctx": "A man sits down", "endings": ["and eats.", "then stands up and leaves the room."], "label": "1"}

{"context": "One two three", "choices": [" four", " four"], "answer": " four"}
{"context": "Once upon a time there was a very long story that goes on and on and on and on, page after page, chapter after chapter, well past the thirty-two tokens of this tiny model's window", "choices": [" end", " more"], "answer": 1}
J

# ---- --choices -----------------------------------------------------------------------------
x "$TMP/c.out" "$TMP/c.err" eval -m "$M" --choices "$TMP/c.jsonl" --predictions "$TMP/p.jsonl"
why=$(why_run "$TMP/c.err")
last=$(tail -n 1 "$TMP/c.out")
[[ -z $why ]] && ! grep -qE '^\{"examples": 4, "accuracy": [0-9.e-]+, "accuracy_norm": [0-9.e-]+\}$' <<<"$last" &&
  why="last line is not the result: $last"
[[ -z $why ]] && ! grep -q "truncated: *1 example" "$TMP/c.out" && why="the long example is not counted as truncated"
report "eval --choices: the JSON result is the last line" "$why"

# The predictions: one line per example; accuracy = share of pred == label; identical choices
# score the same and the first wins.
why=""
[[ $(wc -l <"$TMP/p.jsonl") -ne 4 ]] && why="$(wc -l <"$TMP/p.jsonl") prediction lines, want 4"
if [[ -z $why ]]; then
  n_ok=0
  while IFS= read -r l; do
    pred=$(grep -oE '"pred":[0-9]+' <<<"$l" | cut -d: -f2)
    label=$(grep -oE '"label":[0-9]+' <<<"$l" | cut -d: -f2)
    [[ $pred == "$label" ]] && n_ok=$((n_ok + 1))
  done <"$TMP/p.jsonl"
  acc=$(grep -oE '"accuracy": [0-9.e-]+' <<<"$last" | cut -d' ' -f2)
  awk -v a="$acc" -v n="$n_ok" 'BEGIN { exit !(a == n / 4) }' || why="accuracy $acc but $n_ok of 4 predictions are right"
fi
l3=$(sed -n 3p "$TMP/p.jsonl")
s3=$(grep -oE '"scores_sum":\[[^]]*\]' <<<"$l3" | cut -d'[' -f2 | tr -d ']')
[[ -z $why && ${s3%,*} != "${s3#*,}" ]] && why="identical choices scored differently: $s3"
[[ -z $why ]] && ! grep -q '"index":2,.*"pred":0,"pred_norm":0,"label":0' <<<"$l3" && why="example 2: $l3"
[[ -z $why ]] && ! grep -q '"label":1}' <<<"$(sed -n 2p "$TMP/p.jsonl")" && why="HellaSwag string label not read"
report "eval --predictions: scores and choices per example, consistent with the accuracy" "$why"

x "$TMP/s.out" "$TMP/s.err" eval -m "$M" --choices "$TMP/c.jsonl" --shots 2 --shots-file "$TMP/c.jsonl" --seed 9
why=$(why_run "$TMP/s.err")
x "$TMP/s2.out" "$TMP/s2.err" eval -m "$M" --choices "$TMP/c.jsonl" --shots 2 --shots-file "$TMP/c.jsonl" --seed 9
[[ -z $why && $(tail -n 1 "$TMP/s.out") != $(tail -n 1 "$TMP/s2.out") ]] && why="two runs differ"
[[ -z $why ]] && ! grep -q "shots: *2" "$TMP/s.out" && why="no shots line: $(excerpt "$TMP/s.out")"
report "eval --shots 2: deterministic with a seed" "$why"

printf '{"context":"a","choices":[" b"," c"],"answer":0}\n{bad json\n{"context":"a","choices":[" b"],"answer":0}\n' >"$TMP/bad.jsonl"
expect_error "error: malformed JSONL line, with its line number" "bad.jsonl line 2: invalid JSON" eval -m "$M" --choices "$TMP/bad.jsonl"
x "$TMP/k.out" "$TMP/k.err" eval -m "$M" --choices "$TMP/bad.jsonl" --skip-bad-lines
why=""
[[ $RC -ne 0 ]] && why="exit status $RC: $(excerpt "$TMP/k.err")"
[[ -z $why && $(grep -c 'gpt: warning: .*line [23]' "$TMP/k.err") -ne 2 ]] && why="want 2 warnings: $(excerpt "$TMP/k.err")"
[[ -z $why ]] && ! grep -q '^{"examples": 1,' <<<"$(tail -n 1 "$TMP/k.out")" && why="$(tail -n 1 "$TMP/k.out")"
report "eval --skip-bad-lines: skips them with a warning each" "$why"
printf '{"context":"a","choices":[" b"," c"],"answer":5}\n' >"$TMP/range.jsonl"
expect_error "error: answer out of range" "line 1: \"answer\" 5 is out of range" eval -m "$M" --choices "$TMP/range.jsonl"
printf '{"ctx":"a","endings":[" b"," c"]}\n' >"$TMP/nolabel.jsonl"
expect_error "error: missing label" "missing field \"label\"" eval -m "$M" --choices "$TMP/nolabel.jsonl"
expect_error "error: --shots without --shots-file" "--shots-file" eval -m "$M" --choices "$TMP/c.jsonl" --shots 1
expect_error "error: more shots than examples" "only 3 example(s)" eval -m "$M" --choices "$TMP/c.jsonl" --shots 4 --shots-file "$TMP/c.jsonl"
expect_error "error: --choices without --model" "--model" eval --choices "$TMP/c.jsonl"
expect_error "error: empty choices file" "no examples" eval -m "$M" --choices /dev/null

# ---- --rouge -------------------------------------------------------------------------------
printf 'the cat sat on the mat\nHello world\n' >"$TMP/h.txt"
printf 'the cat is on the mat\n  Hello   world \n' >"$TMP/r.txt"
x "$TMP/r.out" "$TMP/r.err" eval --rouge --hyp "$TMP/h.txt" --ref "$TMP/r.txt"
why=$(why_run "$TMP/r.err")
# pair 1: R1 5/6, R2 3/5, RL 5/6; pair 2: all 1, exact match -> means 11/12, 4/5, 11/12, 1/2
want='{"pairs":2,"rouge1":{"p":0.9166666666666667,"r":0.9166666666666667,"f":0.9166666666666667},"rouge2":{"p":0.8,"r":0.8,"f":0.8},"rougeL":{"p":0.9166666666666667,"r":0.9166666666666667,"f":0.9166666666666667},"exact_match":0.5}'
[[ -z $why && $(tail -n 1 "$TMP/r.out") != "$want" ]] && why="got $(tail -n 1 "$TMP/r.out")"
report "eval --rouge: hand-computed ROUGE-1/2/L and exact match" "$why"
printf '{"id": 1, "summary": "the cat sat on the mat"}\n{"id": 2, "summary": "Hello world"}\n' >"$TMP/h.jsonl"
x "$TMP/r2.out" "$TMP/r2.err" eval --rouge --hyp "$TMP/h.jsonl" --hyp-field summary --ref "$TMP/r.txt"
why=$(why_run "$TMP/r2.err")
[[ -z $why && $(tail -n 1 "$TMP/r2.out") != "$want" ]] && why="got $(tail -n 1 "$TMP/r2.out")"
report "eval --rouge --hyp-field: JSONL texts" "$why"
expect_error "error: --rouge with unpaired texts" "they must pair up" eval --rouge --hyp "$TMP/h.txt" --ref "$TMP/c.jsonl"
expect_error "error: --rouge JSONL line without the field" "line 1: missing field \"text\"" eval --rouge --hyp "$TMP/h.jsonl" --hyp-field text --ref "$TMP/r.txt"
expect_error "error: --rouge without --ref" "--ref" eval --rouge --hyp "$TMP/h.txt"

# --generate: the model writes the summaries; scoring its written file again gives the same ROUGE.
printf '{"text": "The cat sat on the mat all day.", "summary": "cat on mat"}\n{"text": "Stocks fell on Monday.", "summary": "stocks fell"}\n' >"$TMP/s.jsonl"
x "$TMP/g.out" "$TMP/g.err" eval --rouge --generate -m "$M" --input "$TMP/s.jsonl" --max-new-tokens 6 --hyp-out "$TMP/ho.jsonl"
why=$(why_run "$TMP/g.err")
[[ -z $why && $(wc -l <"$TMP/ho.jsonl") -ne 2 ]] && why="--hyp-out has $(wc -l <"$TMP/ho.jsonl") lines"
[[ -z $why ]] && x "$TMP/g2.out" "$TMP/g2.err" eval --rouge --hyp "$TMP/ho.jsonl" --hyp-field hypothesis --ref "$TMP/ho.jsonl" --ref-field reference &&
  why=$(why_run "$TMP/g2.err")
[[ -z $why && $(tail -n 1 "$TMP/g.out") != $(tail -n 1 "$TMP/g2.out") ]] && why="$(tail -n 1 "$TMP/g.out") vs $(tail -n 1 "$TMP/g2.out")"
report "eval --rouge --generate: summaries written and scored" "$why"
expect_error "error: --generate without --model" "--model" eval --rouge --generate --input "$TMP/s.jsonl"

cli_finish
