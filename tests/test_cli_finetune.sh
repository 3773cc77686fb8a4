#!/usr/bin/env bash
# The command-line contract of `gpt finetune instruct`, `gpt generate --instruction` and `gpt chat`:
# a tiny model fine-tuned for a few steps on a committed slice of the instruction data lowers its
# held-out response loss; chat and summarization records train; bad input gives one
# "gpt: error:" line and a non-zero exit; chat works through a pipe, /reset, history trimming.
#
# Usage: bash tests/test_cli_finetune.sh PATH_TO_gpt SOURCE_DIR

if [[ $# -lt 2 ]]; then
  echo "usage: bash $0 PATH_TO_gpt SOURCE_DIR" >&2
  exit 2
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
G=$1
D=$2/tests/data/finetune

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_cli_finetune

# x, why_error and why_ok come from cli_lib.sh; these two override why_ok and why_error.
why_fail() { [[ $RC -eq 0 ]] && echo "exit status 0"; }
why_ok() { [[ $RC -ne 0 ]] && echo "exit status $RC, stderr: $(excerpt "$1")"; }
# why_error ERR TEXT: the run failed with exactly one "gpt: error:" line containing TEXT.
why_error() {
  if [[ $RC -eq 0 ]]; then
    echo "exit status 0"
  elif [[ $(grep -c '^gpt: error: ' "$1") -ne 1 ]] || ! grep -qF -- "$2" "$1"; then
    echo "stderr: $(excerpt "$1")"
  fi
}

"$G" init --out "$TMP/base" --n-layer 1 --n-head 2 --n-embd 32 --context 128 --seed 3 >/dev/null || exit 1
FT=(finetune instruct --model "$TMP/base" --batch-size 8 --lr 1e-2 --seed 1)

# 1. The held-out response loss falls (val = the last 20% of the slice).
x "$TMP/o1" "$TMP/e1" "${FT[@]}" --data "$D/instruct.jsonl" --val-fraction 0.2 --max-steps 10 --max-len 96 \
  --out "$TMP/ft"
why=$(why_ok "$TMP/e1")
if [[ -z $why ]]; then
  first=$(grep -m1 '"val_loss"' "$TMP/ft/metrics.jsonl" | sed 's/.*"val_loss":\([0-9.e+-]*\).*/\1/')
  last=$(grep '"val_loss"' "$TMP/ft/metrics.jsonl" | tail -1 | sed 's/.*"val_loss":\([0-9.e+-]*\).*/\1/')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' ||
    why="held-out loss did not fall by 1.0: $first -> $last"
  for f in config.json model.safetensors vocab.json loss.svg finetune.json; do
    [[ -s $TMP/ft/$f ]] || why="$why no $f;"
  done
fi
report "finetune instruct lowers the held-out response loss" "$why"

# 2. Chat and summarization records train (auto template; CSV).
x "$TMP/o2" "$TMP/e2" "${FT[@]}" --data "$D/chat.jsonl" --val-fraction 0 --max-steps 2 --out "$TMP/chat"
report "finetune instruct on chat records" "$(why_ok "$TMP/e2")"
x "$TMP/o3" "$TMP/e3" "${FT[@]}" --data "$D/summarize.csv" --template summarize --val-fraction 0.2 \
  --max-steps 2 --pack --out "$TMP/sum"
report "finetune instruct on summarization records (csv, packed)" "$(why_ok "$TMP/e3")"
# A template file: the records' own fields in its {placeholders}; a malformed file is one error.
printf '%s\n' '{"prompt": "Question: {question}\nAnswer:", "response": " {answer}", "stop": ["\n"]}' >"$TMP/qa.json"
printf '%s\n' '{"question": "Capital of France?", "answer": "Paris"}' '{"question": "Legs of a spider?", "answer": "Eight"}' \
  '{"question": "Two plus two?", "answer": "Four"}' >"$TMP/qa.jsonl"
x "$TMP/o4" "$TMP/e4" "${FT[@]}" --data "$TMP/qa.jsonl" --template "$TMP/qa.json" --val-fraction 0 --max-steps 2 \
  --out "$TMP/qa"
report "finetune instruct with a template file" "$(why_ok "$TMP/e4")"
printf '%s\n' '{"prompt": "Q: {question", "response": "{answer}"}' >"$TMP/badq.json"
x "$TMP/o5" "$TMP/e5" "${FT[@]}" --data "$TMP/qa.jsonl" --template "$TMP/badq.json" --max-steps 2 --out "$TMP/badq"
report "finetune instruct: a malformed template file is one error" "$(why_error "$TMP/e5" "opens no {field}")"

# LoRA and partial fine-tuning through the same loop.
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$D/instruct.jsonl" --max-steps 2 --max-len 64 --trainable lora \
  --lora-r 4 --out "$TMP/lora"
why=$(why_ok "$TMP/e")
for f in adapter_model.safetensors adapter_config.json model.safetensors; do
  [[ -z $why && ! -s $TMP/lora/$f ]] && why="no $f"
done
report "finetune --trainable lora saves adapters and the merged model" "$why"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$D/instruct.jsonl" --max-steps 1 --max-len 64 --trainable last:1 --out "$TMP/l1"
report "finetune --trainable last:1" "$(why_ok "$TMP/e")"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$D/instruct.jsonl" --trainable lora --lora-targets c_xyz --out "$TMP/b"
report "unknown LoRA target" "$(why_error "$TMP/e" "c_xyz")"

# 3. Records longer than --max-len are truncated and counted.
x "$TMP/o4" "$TMP/e4" "${FT[@]}" --data "$D/instruct.jsonl" --max-len 40 --max-steps 1 --out "$TMP/t"
why=$(why_ok "$TMP/e4")
[[ -z $why ]] && ! grep -q 'records are longer than 40 tokens and were truncated' "$TMP/e4" &&
  why="no truncation note: $(excerpt "$TMP/e4")"
report "long records truncated with a count" "$why"

# 4. Bad input: one error line each.
{ head -2 "$D/instruct.jsonl"; echo '{"instruction": "x", '; sed -n 3,10p "$D/instruct.jsonl"; } >"$TMP/bad.jsonl"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$TMP/bad.jsonl" --max-steps 1 --out "$TMP/b"
report "malformed line rejects the file, with its line number" "$(why_error "$TMP/e" "bad.jsonl:3: invalid JSON")"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$TMP/bad.jsonl" --max-steps 1 --out "$TMP/b" --skip-bad-lines
why=$(why_ok "$TMP/e")
[[ -z $why ]] && ! grep -q 'skipped 1 malformed line' "$TMP/e" && why="no warning: $(excerpt "$TMP/e")"
report "--skip-bad-lines skips and counts" "$why"
: >"$TMP/empty.jsonl"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$TMP/empty.jsonl" --out "$TMP/b"
report "empty data file" "$(why_error "$TMP/e" "empty.jsonl: the file is empty")"
echo '{"instruction": "Say hi.", "output": ""}' >"$TMP/emptyout.jsonl"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$TMP/emptyout.jsonl" --val-fraction 0 --out "$TMP/b"
report "empty response" "$(why_error "$TMP/e" 'emptyout.jsonl:1: field "output" is empty')"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$D/instruct.jsonl" --template bogus --out "$TMP/b"
report "unknown template" "$(why_error "$TMP/e" 'unknown template "bogus"')"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$D/instruct.jsonl" --max-len 500 --out "$TMP/b"
report "--max-len beyond the context" "$(why_error "$TMP/e" "longer than the model's context (128)")"
x "$TMP/o" "$TMP/e" "${FT[@]}" --data "$D/instruct.jsonl" --trainable last:5 --out "$TMP/b"
report "--trainable last:N beyond the layers" "$(why_error "$TMP/e" "--trainable last:N needs N between 0")"

# 5. Inference with the templates.
x "$TMP/o5" "$TMP/e5" generate --model "$TMP/ft" --instruction "Name a color." --input "" -n 5 --seed 1
report "generate --instruction" "$(why_ok "$TMP/e5")"
x "$TMP/o" "$TMP/e" generate --model "$TMP/ft" --input "x" -n 5
report "generate --input without --instruction" "$(why_error "$TMP/e" "--input goes with --instruction")"
printf 'Hello there\n/reset\nHow are you?\n/exit\nnever read\n' |
  "$G" chat --model "$TMP/chat" -n 6 --seed 1 --system "Be terse." >"$TMP/o6" 2>"$TMP/e6"
RC=$?
why=$(why_ok "$TMP/e6")
[[ -z $why ]] && ! grep -q '(history cleared)' "$TMP/e6" && why="no reset: $(excerpt "$TMP/e6")"
[[ -z $why && ! -s $TMP/o6 ]] && why="no reply"
report "chat through a pipe, /reset, /exit" "$why"
# without -n, a reply may take up to half of this model's context of 128 (the default 256 would not fit)
printf 'Hello there\n' | "$G" chat --model "$TMP/chat" --seed 1 >"$TMP/o8" 2>"$TMP/e8"
RC=$?
report "chat's default reply length fits a short context" "$(why_ok "$TMP/e8")"
x "$TMP/o" "$TMP/e" chat --model "$TMP/chat" -n 128
report "chat -n as long as the context" "$(why_error "$TMP/e" "leaves no room")"
long=$(printf 'word %.0s' {1..30})
printf '%s\n' "$long" "$long" "$long" "$long" |
  "$G" chat --model "$TMP/chat" -n 20 --seed 1 >"$TMP/o7" 2>"$TMP/e7"
RC=$?
why=$(why_ok "$TMP/e7")
[[ -z $why && $(grep -c 'dropping its oldest turns' "$TMP/e7") -ne 1 ]] &&
  why="expected one trimming note: $(excerpt "$TMP/e7")"
report "chat trims the history to the context, saying so once" "$why"

cli_finish
