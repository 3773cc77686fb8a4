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
[[ -z $why ]] && ! grep -qE '^\{"examples": 4, "accuracy": [0-9.e-]+, "accuracy_norm": [0-9.e-]+, "accuracy_char": [0-9.e-]+\}$' <<<"$last" &&
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
[[ -z $why ]] && ! grep -q '"index":2,.*"pred":0,"pred_norm":0,"pred_char":0,"label":0' <<<"$l3" && why="example 2: $l3"
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
[[ -z $why && $(tail -n 1 "$TMP/r.out") != "${want%\}}",\"bleu\":* ]] && why="got $(tail -n 1 "$TMP/r.out")"
report "eval --rouge: hand-computed ROUGE-1/2/L and exact match" "$why"
printf '{"id": 1, "summary": "the cat sat on the mat"}\n{"id": 2, "summary": "Hello world"}\n' >"$TMP/h.jsonl"
x "$TMP/r2.out" "$TMP/r2.err" eval --rouge --hyp "$TMP/h.jsonl" --hyp-field summary --ref "$TMP/r.txt"
why=$(why_run "$TMP/r2.err")
[[ -z $why && $(tail -n 1 "$TMP/r2.out") != "${want%\}}",\"bleu\":* ]] && why="got $(tail -n 1 "$TMP/r2.out")"
report "eval --rouge --hyp-field: JSONL texts" "$why"
expect_error "error: --rouge with unpaired texts" "they must pair up" eval --rouge --hyp "$TMP/h.txt" --ref "$TMP/c.jsonl"
expect_error "error: --rouge JSONL line without the field" "line 1: missing field \"text\"" eval --rouge --hyp "$TMP/h.jsonl" --hyp-field text --ref "$TMP/r.txt"
expect_error "error: --rouge without --ref" "--ref" eval --rouge --hyp "$TMP/h.txt"

# --bleu is the same mode; --json prints the JSON object alone, the same as the table's last line.
x "$TMP/b.out" "$TMP/b.err" eval --bleu --json --hyp "$TMP/h.txt" --ref "$TMP/r.txt"
why=$(why_run "$TMP/b.err")
[[ -z $why && $(wc -l <"$TMP/b.out") -ne 1 ]] && why="--json printed $(wc -l <"$TMP/b.out") lines"
[[ -z $why && $(cat "$TMP/b.out") != "$(tail -n 1 "$TMP/r.out")" ]] && why="$(cat "$TMP/b.out") vs $(tail -n 1 "$TMP/r.out")"
report "eval --bleu --json: the same JSON object alone" "$why"

# ---- --generate: every template on the tiny model ------------------------------------------------
# A file's records answered under TEMPLATE: the outputs file has one line per record with its
# template and reference, and scoring that file again with --hyp/--ref gives the same JSON.
# check_generate NAME FILE TEMPLATE N REF1 [EXTRA ARGS...]: REF1 is the first record's reference.
check_generate() {
  local name=$1 file=$2 tmpl=$3 n=$4 ref1=$5 why=""
  shift 5
  rm -f "$TMP/go.jsonl"
  x "$TMP/g.out" "$TMP/g.err" eval --generate -m "$M" --input "$file" --template "$tmpl" --max-new-tokens 6 \
    --out "$TMP/go.jsonl" "$@"
  why=$(why_run "$TMP/g.err")
  [[ -z $why && $(wc -l <"$TMP/go.jsonl") -ne $n ]] && why="--out has $(wc -l <"$TMP/go.jsonl") lines, want $n"
  [[ -z $why && $tmpl != auto && $tmpl != */* && $(grep -c "\"template\":\"$tmpl\"" "$TMP/go.jsonl") -ne $n ]] &&
    why="not every line says template $tmpl: $(excerpt "$TMP/go.jsonl")"
  [[ -z $why ]] && ! head -n 1 "$TMP/go.jsonl" | grep -qF "\"reference\":\"$ref1\"" &&
    why="first reference is not '$ref1': $(head -n 1 "$TMP/go.jsonl")"
  [[ -z $why ]] && ! grep -q "^records: *$n from .*(template $tmpl)" "$TMP/g.out" && why="$(excerpt "$TMP/g.out")"
  [[ -z $why ]] && ! grep -q '^{"pairs":'"$n"',"rouge1":.*"bleu":{"score":.*"distinct1":.*"repetition":' \
    <<<"$(tail -n 1 "$TMP/g.out")" && why="last line: $(tail -n 1 "$TMP/g.out")"
  if [[ -z $why ]]; then
    x "$TMP/g2.out" "$TMP/g2.err" eval --rouge --json --hyp "$TMP/go.jsonl" --hyp-field hypothesis \
      --ref "$TMP/go.jsonl" --ref-field reference
    why=$(why_run "$TMP/g2.err")
    [[ -z $why && $(tail -n 1 "$TMP/g.out") != "$(cat "$TMP/g2.out")" ]] &&
      why="scores differ: $(tail -n 1 "$TMP/g.out") vs rescored $(cat "$TMP/g2.out")"
  fi
  report "eval --generate --template $tmpl: $name" "$why"
}

cat >"$TMP/alpaca.jsonl" <<'J'
{"instruction": "Convert 45 kilometers to meters.", "input": "", "output": "45 kilometers is 45000 meters."}
{"instruction": "Edit the following sentence for grammar.", "input": "He go to the park every day.", "output": "He goes to the park every day."}
{"instruction": "Name a colour.", "output": "Blue."}
J
cat >"$TMP/chat.jsonl" <<'J'
{"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}
{"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Again."}, {"role": "assistant", "content": "Hello again!"}]}
J
cat >"$TMP/sum.csv" <<'C'
text,summary
"The meeting, planned for Monday, moved to Tuesday because the room was booked.",Meeting moved to Tuesday.
"Rain fell all day, so the match was called off and will be replayed next week.",Match postponed by rain.
C
check_generate "Alpaca records, the output as reference" "$TMP/alpaca.jsonl" alpaca 3 "45 kilometers is 45000 meters."
check_generate "chat records, the last reply as reference" "$TMP/chat.jsonl" chat 2 "Paris."
check_generate "TL;DR from CSV" "$TMP/sum.csv" summarize 2 "Meeting moved to Tuesday."
# A template file ({field} placeholders): its response, filled, is the reference; the JSONL says "file".
printf '%s\n' '{"prompt": "Question: {question}\nAnswer:", "response": " {answer}", "stop": ["\n"]}' >"$TMP/qa.json"
printf '%s\n' '{"question": "Capital of France?", "answer": "Paris"}' '{"question": "Legs of a spider?", "answer": "Eight"}' \
  >"$TMP/qa.jsonl"
check_generate "a template file" "$TMP/qa.jsonl" "$TMP/qa.json" 2 " Paris"
why=""
[[ $(grep -c '"template":"file"' "$TMP/go.jsonl") -ne 2 ]] && why="$(excerpt "$TMP/go.jsonl")"
report "eval --generate --template FILE: the outputs say template file" "$why"
# auto: each record's template from its fields.
cat "$TMP/alpaca.jsonl" "$TMP/chat.jsonl" "$TMP/s.jsonl" 2>/dev/null >"$TMP/mixed.jsonl"
printf '{"text": "Stocks fell on Monday.", "summary": "stocks fell"}\n' >>"$TMP/mixed.jsonl"
check_generate "mixed records" "$TMP/mixed.jsonl" auto 6 "45 kilometers is 45000 meters."
why=""
[[ $(grep -c '"template":"alpaca"' "$TMP/go.jsonl") -ne 3 || $(grep -c '"template":"chat"' "$TMP/go.jsonl") -ne 2 ||
  $(grep -c '"template":"summarize"' "$TMP/go.jsonl") -ne 1 ]] && why="$(excerpt "$TMP/go.jsonl")"
report "eval --generate --template auto: each record's own template" "$why"
# The scores come from the outputs: with the model's own greedy answers as the references, every
# answer matches exactly and BLEU is 100.
check_generate "Alpaca records again" "$TMP/alpaca.jsonl" alpaca 3 "45 kilometers is 45000 meters."
/usr/bin/python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
outs = [json.loads(l) for l in open(sys.argv[2])]
for r, o in zip(recs, outs):
    r["output"] = o["hypothesis"]
    print(json.dumps(r))' "$TMP/alpaca.jsonl" "$TMP/go.jsonl" >"$TMP/self.jsonl"
x "$TMP/self.out" "$TMP/self.err" eval --generate --json -m "$M" --input "$TMP/self.jsonl" --max-new-tokens 6
why=$(why_run "$TMP/self.err")
[[ -z $why ]] && ! grep -q '"rouge1":{"p":1.0,"r":1.0,"f":1.0}.*"exact_match":1.0,"bleu":{"score":100.0' "$TMP/self.out" && why="$(excerpt "$TMP/self.out")"
report "eval --generate: its own answers as references score exact match 1 and BLEU 100" "$why"
# Other field names, and the old spelling (--rouge --generate --hyp-out) still works.
printf '{"article": "The cat sat on the mat all day.", "highlights": "cat on mat"}\n' >"$TMP/art.jsonl"
check_generate "--source-field/--ref-field" "$TMP/art.jsonl" summarize 1 "cat on mat" --source-field article --ref-field highlights
x "$TMP/o.out" "$TMP/o.err" eval --rouge --generate -m "$M" --input "$TMP/sum.csv" --max-new-tokens 4 --hyp-out "$TMP/old.jsonl"
why=$(why_run "$TMP/o.err")
[[ -z $why && $(wc -l <"$TMP/old.jsonl") -ne 2 ]] && why="--hyp-out has $(wc -l <"$TMP/old.jsonl") lines"
report "eval --rouge --generate --hyp-out: the old spelling" "$why"

# Greedy by default and repeatable; sampling flags sample, repeatable with --seed, varied across seeds.
gen_out() {
  x "$TMP/d.out" "$TMP/d.err" eval --generate -m "$M" --input "$TMP/alpaca.jsonl" --max-new-tokens 8 --out "$1" "${@:2}"
}
gen_out "$TMP/g1.jsonl"; why=$(why_run "$TMP/d.err")
[[ -z $why ]] && ! grep -q "^decoding: *greedy" "$TMP/d.out" && why="$(excerpt "$TMP/d.out")"
gen_out "$TMP/g2.jsonl"
[[ -z $why ]] && ! cmp -s "$TMP/g1.jsonl" "$TMP/g2.jsonl" && why="two greedy runs differ"
report "eval --generate: greedy by default, the same twice" "$why"
gen_out "$TMP/s1.jsonl" --temperature 1.5 --top-k 0 --seed 5; why=$(why_run "$TMP/d.err")
[[ -z $why ]] && ! grep -q "^decoding: *sampled (temperature 1.5, top-k 0, top-p 1, seed 5)" "$TMP/d.out" && why="$(excerpt "$TMP/d.out")"
gen_out "$TMP/s2.jsonl" --temperature 1.5 --top-k 0 --seed 5
[[ -z $why ]] && ! cmp -s "$TMP/s1.jsonl" "$TMP/s2.jsonl" && why="two runs with --seed 5 differ"
gen_out "$TMP/s3.jsonl" --temperature 1.5 --top-k 0 --seed 6
[[ -z $why ]] && cmp -s "$TMP/s1.jsonl" "$TMP/s3.jsonl" && why="--seed 5 and --seed 6 wrote the same samples"
[[ -z $why ]] && cmp -s "$TMP/s1.jsonl" "$TMP/g1.jsonl" && why="sampling at temperature 1.5 wrote the greedy answers"
report "eval --generate --temperature/--top-k/--seed: sampled, repeatable per seed" "$why"
x "$TMP/j.out" "$TMP/j.err" eval --generate --json -m "$M" --input "$TMP/alpaca.jsonl" --max-new-tokens 8
why=$(why_run "$TMP/j.err")
[[ -z $why && $(wc -l <"$TMP/j.out") -ne 1 ]] && why="--json printed $(wc -l <"$TMP/j.out") lines"
gen_out "$TMP/g3.jsonl"
[[ -z $why && $(cat "$TMP/j.out") != "$(tail -n 1 "$TMP/d.out")" ]] && why="$(cat "$TMP/j.out") vs $(tail -n 1 "$TMP/d.out")"
report "eval --generate --json: the JSON object alone" "$why"

# Bad input: one line, non-zero, before any generation.
printf '{"instruction": "Add 2 and 3."}\n' >"$TMP/noout.jsonl"
expect_error "error: --generate, a record without its reference" "noout.jsonl:1: no field \"output\"" \
  eval --generate -m "$M" --input "$TMP/noout.jsonl"
printf '{"text": "x", "summary": "y"}\n{"prompt": "x"}\n' >"$TMP/unk.jsonl"
expect_error "error: --generate, a record of no template" "unk.jsonl:2: cannot tell the template" \
  eval --generate -m "$M" --input "$TMP/unk.jsonl"
expect_error "error: --generate, a missing prompt field" "no field \"instruction\"" \
  eval --generate -m "$M" --input "$TMP/sum.csv" --template alpaca
printf '{"messages": [{"role": "user", "content": "Hi"}]}\n' >"$TMP/noreply.jsonl"
expect_error "error: --generate, a chat without the reply to compare" "the last message must be the assistant's reply" \
  eval --generate -m "$M" --input "$TMP/noreply.jsonl"
expect_error "error: --generate, unknown template" "unknown template \"bogus\"" \
  eval --generate -m "$M" --input "$TMP/alpaca.jsonl" --template bogus
: >"$TMP/empty.jsonl"
expect_error "error: --generate, empty input" "empty.jsonl: the file is empty" \
  eval --generate -m "$M" --input "$TMP/empty.jsonl"
expect_error "error: --generate without --model" "--model" eval --generate --input "$TMP/s.jsonl"
expect_error "error: --generate without --input" "--input" eval --generate -m "$M"
expect_error "error: --generate with --hyp" "not --hyp/--ref" eval --generate -m "$M" --input "$TMP/s.jsonl" --hyp "$TMP/h.txt"
expect_error "error: --generate, bad --top-p" "top-p must be in (0, 1]" \
  eval --generate -m "$M" --input "$TMP/alpaca.jsonl" --top-p 2
expect_error "error: --generate, --max-new-tokens 0" "--max-new-tokens must be at least 1" \
  eval --generate -m "$M" --input "$TMP/alpaca.jsonl" --max-new-tokens 0
expect_error "error: a --generate flag without --generate" "--temperature applies to --generate" \
  eval --rouge --hyp "$TMP/h.txt" --ref "$TMP/r.txt" --temperature 0.5
expect_error "error: --bleu, empty files" "hold no texts" eval --bleu --hyp "$TMP/empty.jsonl" --ref "$TMP/empty.jsonl"
[[ -e $TMP/x.jsonl ]] && rm "$TMP/x.jsonl"
x "$TMP/e.out" "$TMP/e.err" eval --generate -m "$M" --input "$TMP/noout.jsonl" --out "$TMP/x.jsonl"
report "error: no outputs file written for a bad input" "$([[ -e $TMP/x.jsonl ]] && echo "x.jsonl exists")"

cli_finish
