#!/usr/bin/env bash
# `gpt train` end to end: a run, a real kill -9 and a bit-exact resume, a kill in the middle of a
# save, a full disk, a NaN, and bad input (one error line, non-zero exit, nothing overwritten).
#
# Usage: bash tests/test_cli_train.sh PATH_TO_gpt SOURCE_DIR
export LC_ALL=C
G=$1
SRC=$2
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_train_test

# ---- data: the first 40 kB of Tiny Shakespeare, character level ---------------------------------
head -c 40000 "$SRC/data/tinyshakespeare.txt" >"$TMP/ts.txt"
"$G" prepare --input "$TMP/ts.txt" --out "$TMP/data" --tokenizer char -q >"$TMP/prep.out" 2>"$TMP/prep.err"
report "prepare char data" "$(why_ok $? "$TMP/prep.err")"

MODEL=(--n-layer 2 --n-head 2 --n-embd 32 --context 32)
RUN=(--data "$TMP/data" -b 4 -t 32 --lr 3e-3 --warmup 4 --dropout 0.1 --seed 7 --threads 2 -q)

# ---- a whole run ---------------------------------------------------------------------------------
"$G" train "${RUN[@]}" "${MODEL[@]}" --out "$TMP/whole" --steps 20 --eval-every 10 --eval-batches 2 \
  >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
if [[ -z $why ]]; then
  n=$(grep -c '"loss"' "$TMP/whole/metrics.jsonl")
  v=$(grep -c '"val_loss"' "$TMP/whole/metrics.jsonl")
  [[ $n -ne 20 || $v -ne 2 ]] && why="metrics.jsonl has $n step lines and $v val lines (want 20, 2)"
  [[ -z $why && ! -s $TMP/whole/loss.svg ]] && why="no loss.svg"
  [[ -z $why ]] && ! grep -q "<svg" "$TMP/whole/loss.svg" && why="loss.svg is not an SVG"
  [[ -z $why && $(cat "$TMP/whole/latest") != checkpoint-00000020 ]] && why="latest: $(cat "$TMP/whole/latest")"
  first=$(head -n 1 "$TMP/whole/metrics.jsonl" | sed -E 's/.*"loss":([0-9.]+).*/\1/')
  last=$(grep '"loss"' "$TMP/whole/metrics.jsonl" | tail -n 1 | sed -E 's/.*"loss":([0-9.]+).*/\1/')
  [[ -z $why ]] && ! awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.3) }' &&
    why="the loss did not fall: $first -> $last"
fi
report "train 20 steps: metrics, val, plot, checkpoint, learning" "$why"
"$G" info --model "$TMP/whole" >"$TMP/o" 2>"$TMP/e"
report "the output directory loads as a model" "$(why_ok $? "$TMP/e")"

# ---- kill -9 after step 13 (checkpoint at 10), resume: bit-exact ----------------------------------
GPT_TEST_KILL_AT_STEP=13 "$G" train "${RUN[@]}" "${MODEL[@]}" --out "$TMP/parts" --steps 20 --save-every 10 \
  --eval-every 10 --eval-batches 2 >"$TMP/o" 2>"$TMP/e"
rc=$?
why=""
[[ $rc -ne 137 ]] && why="expected death by SIGKILL (137), got $rc"
[[ -z $why && $(cat "$TMP/parts/latest") != checkpoint-00000010 ]] && why="latest: $(cat "$TMP/parts/latest")"
[[ -z $why && $(grep -c '"loss"' "$TMP/parts/metrics.jsonl") -ne 13 ]] && why="metrics lines before the kill"
report "kill -9 at step 13 leaves the step-10 checkpoint" "$why"
"$G" train "${RUN[@]}" --out "$TMP/parts" --steps 20 --save-every 10 --eval-every 10 --eval-batches 2 --resume \
  >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
[[ -z $why ]] && ! cmp -s "$TMP/whole/model.safetensors" "$TMP/parts/model.safetensors" &&
  why="weights differ from the uninterrupted run"
[[ -z $why ]] && ! cmp -s <(losses "$TMP/whole/metrics.jsonl") <(losses "$TMP/parts/metrics.jsonl") &&
  why="metrics differ: $(diff <(losses "$TMP/whole/metrics.jsonl") <(losses "$TMP/parts/metrics.jsonl") | head -n 3 | tr '\n' ' ')"
report "resume after kill -9 equals the uninterrupted run (weights, one metrics line per step)" "$why"

# ---- kill -9 in the middle of a save, and a full disk: the previous checkpoint survives -----------
GPT_TEST_KILL_AT_STEP=12 "$G" train "${RUN[@]}" "${MODEL[@]}" --out "$TMP/mid2" --steps 20 --save-every 10 \
  >/dev/null 2>&1
cp "$TMP/mid2/model.safetensors" "$TMP/model10.safetensors"
GPT_TEST_KILL_IN_SAVE=20 "$G" train "${RUN[@]}" --out "$TMP/mid2" --steps 20 --save-every 10 --resume \
  >"$TMP/o" 2>"$TMP/e"
rc=$?
why=""
[[ $rc -ne 137 ]] && why="expected death by SIGKILL (137), got $rc"
[[ -z $why && $(cat "$TMP/mid2/latest") != checkpoint-00000010 ]] && why="latest: $(cat "$TMP/mid2/latest")"
[[ -z $why ]] && ! cmp -s "$TMP/model10.safetensors" "$TMP/mid2/model.safetensors" && why="the model changed"
report "kill -9 during a save leaves the previous checkpoint" "$why"
( ulimit -f 64; exec "$G" train "${RUN[@]}" --out "$TMP/mid2" --steps 20 --save-every 10 --resume ) \
  >"$TMP/o" 2>"$TMP/e"
why=$(why_error $? "$TMP/e" "cannot save the checkpoint of step 20")
[[ -z $why && $(cat "$TMP/mid2/latest") != checkpoint-00000010 ]] && why="latest: $(cat "$TMP/mid2/latest")"
[[ -z $why ]] && ! cmp -s "$TMP/model10.safetensors" "$TMP/mid2/model.safetensors" && why="the model changed"
[[ -z $why ]] && ls -a "$TMP/mid2" | grep -q tmp && why="temporary files left: $(ls -a "$TMP/mid2" | tr '\n' ' ')"
report "a full disk (file size limit) on save: clear error, previous checkpoint intact" "$why"
"$G" train "${RUN[@]}" --out "$TMP/mid2" --steps 20 --save-every 10 --resume >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
[[ -z $why ]] && ! cmp -s "$TMP/whole/model.safetensors" "$TMP/mid2/model.safetensors" &&
  why="weights differ from the uninterrupted run"
report "resume after both still equals the uninterrupted run" "$why"

# ---- NaN --------------------------------------------------------------------------------------------
GPT_TEST_POISON_AT_STEP=6 "$G" train "${RUN[@]}" "${MODEL[@]}" --out "$TMP/nan" --steps 10 --save-every 5 \
  >"$TMP/o" 2>"$TMP/e"
why=$(why_error $? "$TMP/e" "the loss became nan at step 6")
[[ -z $why ]] && ! grep -q "last good checkpoint (step 5)" "$TMP/e" && why="no mention of the checkpoint: $(excerpt "$TMP/e")"
[[ -z $why && $(cat "$TMP/nan/latest") != checkpoint-00000005 ]] && why="latest: $(cat "$TMP/nan/latest")"
report "a NaN loss stops training, last good checkpoint kept" "$why"

# ---- bad input: one error line, non-zero exit, nothing written --------------------------------------
bad() { # NAME SUBSTRING ARGS...
  local name=$1 sub=$2
  shift 2
  rm -rf "$TMP/badout"
  "$G" train "$@" >"$TMP/o" 2>"$TMP/e"
  local rc=$? why
  why=$(why_error $rc "$TMP/e" "$sub")
  [[ -z $why && -e $TMP/badout ]] && why="$TMP/badout was created"
  report "bad input: $name" "$why"
}
mkdir -p "$TMP/small" "$TMP/corrupt" "$TMP/trunc"
head -c 300 "$TMP/ts.txt" >"$TMP/s300.txt"
"$G" prepare --input "$TMP/s300.txt" --out "$TMP/small" --tokenizer char -q >/dev/null 2>&1
cp "$TMP/data"/* "$TMP/corrupt/" && printf 'XXXX' | dd of="$TMP/corrupt/train_000000.bin" conv=notrunc 2>/dev/null
cp "$TMP/data"/* "$TMP/trunc/" && truncate -s -100 "$TMP/trunc/train_000000.bin"
B=(-b 4 -q "${MODEL[@]}" --out "$TMP/badout")
bad "data smaller than one batch" "too small" --data "$TMP/small" "${B[@]}"
bad "missing data directory" "no such data directory" --data "$TMP/nope" "${B[@]}"
bad "corrupt shard (bad magic)" "bad magic" --data "$TMP/corrupt" "${B[@]}"
bad "truncated shard" "corrupt token shard" --data "$TMP/trunc" "${B[@]}"
bad "model directory that does not exist" "not a model directory" --data "$TMP/data" --init "$TMP/nope" -q --out "$TMP/badout"
"$G" init --n-layer 1 --n-head 1 --n-embd 8 --context 32 --out "$TMP/gpt2model" >/dev/null 2>&1
bad "vocabulary that does not match the model" "does not match" --data "$TMP/data" --init "$TMP/gpt2model" -q \
  --out "$TMP/badout"
bad "--resume with no checkpoint" "no checkpoint" --data "$TMP/data" --resume -q --out "$TMP/badout"
bad "--lr 0" "--lr" --data "$TMP/data" "${B[@]}" --lr 0
bad "--steps 0" "--steps" --data "$TMP/data" "${B[@]}" --steps 0
bad "--dropout 1" "dropout" --data "$TMP/data" "${B[@]}" --dropout 1
bad "--schedule exp" "schedule" --data "$TMP/data" "${B[@]}" --schedule exp
bad "--seq-len beyond the context" "context" --data "$TMP/data" "${B[@]}" -t 64
bad "no model given" "say which model" --data "$TMP/data" -q --out "$TMP/badout"
before=$(cat "$TMP/whole/latest")
"$G" train "${RUN[@]}" "${MODEL[@]}" --out "$TMP/whole" --steps 20 >"$TMP/o" 2>"$TMP/e"
why=$(why_error $? "$TMP/e" "already holds a training run")
[[ -z $why && $(cat "$TMP/whole/latest") != "$before" ]] && why="the run was changed"
report "bad input: a fresh run into a used directory" "$why"

cli_finish
