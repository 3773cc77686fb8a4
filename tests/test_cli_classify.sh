#!/usr/bin/env bash
# gpt finetune classify and gpt classify end to end on a tiny crafted task (label: whether the text
# holds a 'z'), learnt to 100%; outputs, files, pair inputs and one-line errors for bad input.
# Usage: bash tests/test_cli_classify.sh PATH_TO_gpt
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_gpt_arg "$@"
cli_tmpdir gpt_cli_classify

expect_error() {
  local name=$1 sub=$2 why=""
  shift 2
  x "$TMP/e.out" "$TMP/e.err" "$@"
  if [[ $RC -eq 0 || $RC -ge 128 ]]; then
    why="exit status $RC"
  elif [[ $(wc -l <"$TMP/e.err") -ne 1 ]] || ! grep -q '^gpt: error: ' "$TMP/e.err"; then
    why="not one 'gpt: error:' line: $(excerpt "$TMP/e.err")"
  elif ! grep -qF -- "$sub" "$TMP/e.err"; then
    why="message does not mention '$sub': $(excerpt "$TMP/e.err")"
  fi
  report "$name" "$why"
}

# Deterministic crafted data: texts of a, b, c and spaces; every second one has a 'z' ("yes").
make_split() { # FILE N SEED
  awk -v n="$2" -v seed="$3" 'BEGIN {
    srand(seed); print "text\tlabel"
    for (i = 0; i < n; i++) {
      len = 3 + int(rand() * 6); t = ""
      for (k = 0; k < len; k++) t = t substr("abc ", 1 + int(rand() * 4), 1)
      if (i % 2 == 0) { p = 1 + int(rand() * len); t = substr(t, 1, p - 1) "z" substr(t, p + 1); lab = "yes" } else lab = "no"
      print t "\t" lab
    }
  }' >"$1"
}
make_split "$TMP/train.tsv" 96 1
make_split "$TMP/val.tsv" 16 2
make_split "$TMP/test.tsv" 16 3
printf 'abc z\n$' >"$TMP/alphabet.txt" # newline and $ make the pair delimiter

x "$TMP/v.out" "$TMP/v.err" char-vocab --input "$TMP/alphabet.txt" --out "$TMP/vocab"
why=$(why_run "$TMP/v.err")
[[ -z $why ]] && x "$TMP/i.out" "$TMP/i.err" init --n-layer 2 --n-head 2 --n-embd 16 --context 16 --vocab-size 7 \
  --tokenizer "char:$TMP/vocab" --seed 1 --out "$TMP/m" && why=$(why_run "$TMP/i.err")
report "a tiny character-level model" "$why"

C=$TMP/clf
x "$TMP/f.out" "$TMP/f.err" finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/val.tsv" \
  --test "$TMP/test.tsv" --out "$C" --epochs 20 --batch-size 8 --lr 1e-2 --weight-decay 0 --seed 3 --threads 2 -q
why=$(why_run "$TMP/f.err")
for f in config.json model.safetensors classifier.json classifier.safetensors results.json metrics.jsonl; do
  [[ -z $why && ! -s $C/$f ]] && why="no $f in the output"
done
for e in 1 10 20; do
  [[ -z $why ]] && ! grep -q "^epoch $e: step [0-9]*, val loss [0-9.]*, val accuracy [0-9.]*$" "$TMP/f.out" &&
    why="no line for epoch $e: $(excerpt "$TMP/f.out")"
done
[[ -z $why && $(tail -n 1 "$TMP/f.out") != '{"val_accuracy":1.0,"test_accuracy":1.0}' ]] && why="last line: $(tail -n 1 "$TMP/f.out")"
report "finetune classify: a tiny task learnt to 100% val and test accuracy" "$why"
why=""
! grep -qE '^yes +0 +8$' "$TMP/f.out" && why="no confusion matrix row 'yes 0 8': $(excerpt "$TMP/f.out")"
[[ -z $why ]] && ! grep -q '"labels": \[' "$C/results.json" && why="results.json has no labels"
[[ -z $why ]] && ! grep -q '"matrix"' "$C/results.json" && why="results.json has no confusion matrix"
report "finetune classify: confusion matrix printed and in results.json" "$why"

x "$TMP/c.out" "$TMP/c.err" classify -m "$C" --input "$TMP/test.tsv"
why=$(why_run "$TMP/c.err")
[[ -z $why && $(wc -l <"$TMP/c.out") -ne 16 ]] && why="$(wc -l <"$TMP/c.out") lines for 16 inputs"
if [[ -z $why ]]; then
  want=$(tail -n +2 "$TMP/test.tsv" | cut -f2)
  got=$(grep -oE '"label":"[a-z]+"' "$TMP/c.out" | cut -d'"' -f4)
  [[ $want != "$got" ]] && why="labels differ from the test file's"
fi
[[ -z $why ]] && ! grep -qE '^\{"label":"(yes|no)","probs":\{"no":[0-9.e-]+,"yes":[0-9.e-]+\}\}$' <<<"$(head -n 1 "$TMP/c.out")" &&
  why="line format: $(head -n 1 "$TMP/c.out")"
report "classify --input: one JSON line per text with the label and probabilities" "$why"
x "$TMP/c.out" "$TMP/c.err" classify -m "$C" --text "ab zc"
why=$(why_run "$TMP/c.err")
[[ -z $why ]] && ! grep -q '"label":"yes"' "$TMP/c.out" && why="$(excerpt "$TMP/c.out")"
report "classify --text" "$why"

# LoRA: adapters and head train, the base stays as it was; gpt classify attaches the adapters.
L=$TMP/lora
x "$TMP/l.out" "$TMP/l.err" finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/val.tsv" --out "$L" \
  --trainable lora --lora-r 4 --epochs 10 --batch-size 8 --lr 1e-2 --seed 3 --threads 2 -q
why=$(why_run "$TMP/l.err")
for f in adapter_model.safetensors adapter_config.json classifier.safetensors; do
  [[ -z $why && ! -s $L/$f ]] && why="no $f in the output"
done
[[ -z $why ]] && ! cmp -s "$TMP/m/model.safetensors" "$L/model.safetensors" && why="the base model changed"
if [[ -z $why ]]; then
  acc=$(tail -n 1 "$TMP/l.out" | grep -oE '"val_accuracy":[0-9.]+' | cut -d: -f2)
  x "$TMP/lc.out" "$TMP/lc.err" classify -m "$L" --input "$TMP/val.tsv"
  why=$(why_run "$TMP/lc.err")
  right=$(paste <(tail -n +2 "$TMP/val.tsv" | cut -f2) <(grep -oE '"label":"[a-z]+"' "$TMP/lc.out" | cut -d'"' -f4) | awk '$1 == $2' | wc -l)
  [[ -z $why ]] && ! awk -v a="$acc" -v r="$right" 'BEGIN { exit !(a == r / 16) }' && why="classify gets $right/16 right, training reported $acc"
fi
report "finetune classify --trainable lora: adapters saved, base unchanged, classify agrees" "$why"

# pairs: label = whether text_b repeats text_a's first letter (just the plumbing and the files)
printf 'a\tb\tlabel\nab\tab\tsame\nab\tcb\tdiff\nca\tca\tsame\nbc\tac\tdiff\n' >"$TMP/pairs.tsv"
x "$TMP/p.out" "$TMP/p.err" finetune classify -m "$TMP/m" --train "$TMP/pairs.tsv" --val "$TMP/pairs.tsv" --out "$TMP/pc" \
  --text-field a --text-b-field b --epochs 1 -q
why=$(why_run "$TMP/p.err")
[[ -z $why ]] && ! grep -q '"text_b_field": "b"' "$TMP/pc/classifier.json" && why="classifier.json: $(excerpt "$TMP/pc/classifier.json")"
[[ -z $why ]] && x "$TMP/p.out" "$TMP/p.err" classify -m "$TMP/pc" --text ab --text-b ab && why=$(why_run "$TMP/p.err")
report "finetune classify --text-b-field: pair inputs" "$why"

# bad input
printf 'text\tlabel\nabc\tmaybe\n' >"$TMP/unseen.tsv"
expect_error "error: a label the training file does not have" 'unseen.tsv:2: label "maybe" is not one of the training labels' \
  finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/unseen.tsv" --out "$TMP/o"
printf 'text\tlabel\nabc\n' >"$TMP/short.tsv"
expect_error "error: a row without its label" "short.tsv:2" finetune classify -m "$TMP/m" --train "$TMP/short.tsv" --val "$TMP/val.tsv" --out "$TMP/o"
printf 'text\tlabel\n\tyes\n' >"$TMP/empty.tsv"
expect_error "error: an empty text" 'empty.tsv:2: the text field "text" is empty' finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/empty.tsv" --out "$TMP/o"
printf '{"text": "abc", "label": "yes"}\n{"text": "ab\n{"text": "c", "label": "no"}\n' >"$TMP/bad.jsonl"
expect_error "error: a malformed JSONL line" "bad.jsonl:2" finetune classify -m "$TMP/m" --train "$TMP/bad.jsonl" --val "$TMP/val.tsv" --out "$TMP/o"
x "$TMP/s.out" "$TMP/s.err" finetune classify -m "$TMP/m" --train "$TMP/bad.jsonl" --val "$TMP/val.tsv" --out "$TMP/o" --skip-bad-lines --epochs 1 -q
why=""
[[ $RC -ne 0 ]] && why="exit status $RC: $(excerpt "$TMP/s.err")"
report "finetune classify --skip-bad-lines skips it" "$why"
expect_error "error: --max-len beyond the context" "context" finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/val.tsv" --out "$TMP/o" --max-len 99
expect_error "error: --trainable nonsense" "--trainable must be" finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/val.tsv" --out "$TMP/o" --trainable some
expect_error "error: classify a plain model" "classifier.json" classify -m "$TMP/m" --text abc
expect_error "error: --text-b on a single-text classifier" "single texts" classify -m "$C" --text ab --text-b ab
expect_error "error: --text-b without --text" "--text-b" classify -m "$TMP/pc" --input "$TMP/pairs.tsv" --text-b ab
expect_error "error: a pair classifier without --text-b" "--text-b" classify -m "$TMP/pc" --text ab
x "$TMP/t.out" "$TMP/t.err" finetune classify -m "$TMP/m" --train "$TMP/train.tsv" --val "$TMP/val.tsv" --out "$TMP/o" --max-len 4 --epochs 1 -q
why=$(why_run "$TMP/t.err")
[[ -z $why ]] && ! grep -qE 'train.tsv: [0-9]+ of 96 texts longer than 4 tokens, truncated' "$TMP/t.out" && why="no truncation count: $(excerpt "$TMP/t.out")"
report "finetune classify --max-len: truncations counted" "$why"

cli_finish
