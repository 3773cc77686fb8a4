#!/usr/bin/env bash
# `gpt` against hostile input (issue 22, "Correct under pressure"): JSON nested 300,000 levels
# deep, FIFOs where files belong, damaged checkpoints, NaN weights, impossible thread counts and
# shapes that cannot fit. Each is one "gpt: error: ..." line (or one warning) within seconds,
# never a crash, a hang or a message about something else. The engine side: test_bad_input.cpp.
#
# Usage: bash tests/test_cli_bad_input.sh PATH_TO_gpt
export LC_ALL=C
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_gpt_arg "$@"
cli_tmpdir gpt_bad_input_test

# fails NAME SUBSTRING ARGS...: gpt ARGS exits with one error line mentioning SUBSTRING within
# 20 seconds (a hang is killed and reported as such).
fails() {
  local name=$1 sub=$2
  shift 2
  timeout 20 "$G" "$@" </dev/null >"$TMP/o" 2>"$TMP/e"
  local rc=$? why
  if [[ $rc -eq 124 ]]; then why="hung (killed after 20 s)"; else why=$(why_error $rc "$TMP/e" "$sub"); fi
  report "$name" "$why"
}

# ---- setup: character data, a tiny model, a 4-step run with its checkpoint ---------------------------
yes "The quick brown fox jumps over the lazy dog; 0123456789!" | head -c 20000 >"$TMP/text.txt"
"$G" prepare --input "$TMP/text.txt" --out "$TMP/data" --tokenizer char -q >"$TMP/o" 2>"$TMP/e"
report "setup: prepare char data" "$(why_ok $? "$TMP/e")"
MODEL=(--n-layer 1 --n-head 2 --n-embd 16 --context 32)
RUN=(--data "$TMP/data" -b 2 -t 32 --threads 2 -q)
"$G" train "${RUN[@]}" "${MODEL[@]}" --out "$TMP/run" --steps 4 --save-every 2 >"$TMP/o" 2>"$TMP/e"
report "setup: a 4-step run" "$(why_ok $? "$TMP/e")"
"$G" init --n-layer 1 --n-head 2 --n-embd 16 --context 32 --out "$TMP/m" >"$TMP/o" 2>"$TMP/e"
report "setup: a GPT-2-vocabulary model" "$(why_ok $? "$TMP/e")"
CK=checkpoint-00000004

# ---- JSON nested 300,000 levels: refused by the depth limit (these were SIGSEGV) ----------------------
deep=$(printf '%*s' 300000 '' | tr ' ' '[')$(printf '%*s' 300000 '' | tr ' ' ']')
mkdir "$TMP/tokjson"
printf '{"model": {"type": "BPE", "vocab": {"a": %s}, "merges": []}}' "$deep" >"$TMP/tokjson/tokenizer.json"
fails "deep JSON: tokenizer.json" "tokenizer.json: not valid JSON (nested deeper than 256 levels" \
  tokenize --vocab "$TMP/tokjson"
printf '{"text": %s, "summary": "s"}\n' "$deep" >"$TMP/deep.jsonl"
fails "deep JSON: eval --rouge --generate records" "deep.jsonl:1: invalid JSON (nested deeper than 256 levels" \
  eval --rouge --generate --model "$TMP/m" --input "$TMP/deep.jsonl"
fails "deep JSON: fine-tuning records" "deep.jsonl:1: invalid JSON (nested deeper than 256 levels" \
  finetune instruct --model "$TMP/m" --data "$TMP/deep.jsonl" --out "$TMP/ft"
mkdir "$TMP/adapter"
printf '{"peft_type": %s}' "$deep" >"$TMP/adapter/adapter_config.json"
fails "deep JSON: adapter_config.json" "adapter_config.json: not valid JSON (nested deeper than 256 levels" \
  lora merge --model "$TMP/m" --adapter "$TMP/adapter" --out "$TMP/merged"
printf '%s\n' "$deep" >"$TMP/deep_batch.jsonl"
fails "deep JSON: tokenize --batch-jsonl" "line 1: not valid JSON (nested deeper than 256 levels" \
  tokenize --batch-jsonl --input "$TMP/deep_batch.jsonl"
printf '{"a": 1e999}\n' >"$TMP/overflow.jsonl"
fails "a number beyond double's range, no library tag" "line 1: not valid JSON (number overflow" \
  tokenize --batch-jsonl --input "$TMP/overflow.jsonl"
grep -q "json.exception" "$TMP/e" && report "no [json.exception...] in messages" "$(excerpt "$TMP/e")"

# ---- FIFOs where a file belongs: an error at once (these hung in open()) ------------------------------
cp -r "$TMP/data" "$TMP/fifodata" && rm "$TMP/fifodata/train_000000.bin" && mkfifo "$TMP/fifodata/train_000000.bin"
fails "a FIFO as a token shard" "train_000000.bin: not a regular file (a FIFO)" \
  train --data "$TMP/fifodata" "${MODEL[@]}" -b 2 -t 32 -q --out "$TMP/fifoout"
mkdir "$TMP/fifomodel" && cp "$TMP/m/config.json" "$TMP/fifomodel/"
mkfifo "$TMP/fifomodel/model.safetensors.index.json"
fails "a FIFO as the sharded-safetensors index" "model.safetensors.index.json: not a regular file (a FIFO)" \
  eval --model "$TMP/fifomodel" --text "$TMP/text.txt"

# ---- damaged checkpoints: the broken file and field are named (--steps 4 is the saved step: the old
# message was "is at step 4 already; raise --steps") ---------------------------------------------------
damaged() { # NAME SUBSTRING EDIT-COMMAND...: a copy of the run, edited, resumed
  local name=$1 sub=$2
  shift 2
  rm -rf "$TMP/bad" && cp -r "$TMP/run" "$TMP/bad"
  (cd "$TMP/bad/$CK" && "$@")
  fails "damaged checkpoint: $name" "$sub" train "${RUN[@]}" --out "$TMP/bad" --steps 4 --resume --shuffle
}
damaged "negative step" 'trainer_state.json: corrupt training state: "step" must be a whole number >= 1, got -3' \
  sed -i 's/"step": 4/"step": -3/' trainer_state.json
damaged "fractional step" '"step" must be a whole number >= 1, got 2.5' \
  sed -i 's/"step": 4/"step": 2.5/' trainer_state.json
damaged "non-numeric optimizer step" 'optimizer.safetensors: metadata "step" is "x", not a step count' \
  sed -i 's/"step":"4"/"step":"x"/' optimizer.safetensors
damaged "truncated model.safetensors" "$CK/model.safetensors: tensor" truncate -s -100 model.safetensors
damaged "truncated optimizer.safetensors" "$CK/optimizer.safetensors: tensor" truncate -s -100 optimizer.safetensors
damaged "unreadable trainer_state.json" "trainer_state.json: not a regular file (a directory)" \
  bash -c 'rm trainer_state.json && mkdir trainer_state.json'
# All-zero is xoshiro's fixed point: with --shuffle, drawing a window never ended.
damaged "all-zero random state" '"loader.rng" is all zero' sed -i -E 's/"[0-9]{6,}"/"0"/g' trainer_state.json
rm -rf "$TMP/bad" && cp -r "$TMP/run" "$TMP/bad"
"$G" train "${RUN[@]}" --out "$TMP/bad" --steps 6 --resume >"$TMP/o" 2>"$TMP/e"
report "an intact checkpoint still resumes" "$(why_ok $? "$TMP/e")"

# ---- NaN weights: named, an error where they cannot work, a warning elsewhere -------------------------
cp -r "$TMP/m" "$TMP/nan"
# The first float of the data of model.safetensors (tensors are stored by name: h.0.attn.c_attn.bias)
# becomes NaN.
hl=$(od -An -tu8 -N8 "$TMP/nan/model.safetensors" | tr -d ' ')
printf '\xff\xff\xff\x7f' | dd of="$TMP/nan/model.safetensors" bs=1 seek=$((8 + hl)) conv=notrunc 2>/dev/null
NANMSG='the weights are not finite: tensor "h.0.attn.c_attn.bias" holds 1 NaN or infinite value (the first at [0])'
fails "NaN weights: generate" "$NANMSG" generate --model "$TMP/nan" --prompt "Hi" -n 2
fails "NaN weights: train --init" "$NANMSG" train --data "$TMP/data" --init "$TMP/nan" -q --out "$TMP/nanrun"
timeout 20 "$G" eval --model "$TMP/nan" --text "$TMP/text.txt" >"$TMP/o" 2>"$TMP/e"
rc=$?
why=$(why_ok $rc "$TMP/e")
[[ -z $why && $(grep -c . "$TMP/e") -ne 1 ]] && why="expected one warning line: $(excerpt "$TMP/e")"
[[ -z $why ]] && ! grep -qF "gpt: warning: $TMP/nan: $NANMSG" "$TMP/e" && why="warning: $(excerpt "$TMP/e")"
report "NaN weights: eval warns once, naming the tensor" "$why"

# ---- threads: a count this machine cannot run is refused, never started ------------------------------
fails "--threads 100000" "--threads: 100000 threads is more than" train "${RUN[@]}" "${MODEL[@]}" \
  --threads 100000 --out "$TMP/thr"
fails "--threads 100000 (tokenize)" "--threads: 100000 threads is more than" tokenize --threads 100000 \
  --input "$TMP/text.txt"
# Under a 2 GB address-space limit 16 threads' stacks and OpenBLAS buffers do not fit: OpenBLAS
# retried its allocation forever. (A sanitizer build cannot start under such a limit: skipped.)
if (ulimit -v 2000000 && "$G" --version) >/dev/null 2>&1; then
  (ulimit -v 2000000 && exec timeout 20 "$G" train "${RUN[@]}" "${MODEL[@]}" --threads 16 --out "$TMP/thr16") \
    </dev/null >"$TMP/o" 2>"$TMP/e"
  rc=$?
  [[ $rc -eq 124 ]] && why="hung (killed after 20 s)" || why=$(why_error $rc "$TMP/e" "--threads: 16 threads")
  report "--threads 16 under ulimit -v 2000000" "$why"
  (ulimit -v 2000000 && exec timeout 20 "$G" train --data "$TMP/data" -b 2 -t 32 -q "${MODEL[@]}" --threads 1 \
    --steps 2 --out "$TMP/thr1") </dev/null >"$TMP/o" 2>"$TMP/e"
  report "--threads 1 under ulimit -v 2000000 still trains" "$(why_ok $? "$TMP/e")"
else
  echo "ok - --threads under ulimit -v: skipped (this gpt cannot start under the limit: a sanitizer build)"
fi

# ---- shapes that cannot fit: the size, before any allocation ------------------------------------------
fails "gpt init of 3.3 TB of weights" "needs 3.30 TB of memory for the weights (" \
  init --n-layer 4096 --n-head 32 --n-embd 4096 --context 1024 --out "$TMP/huge"
fails "gpt train of a huge shape" "of memory for training (" train --data "$TMP/data" --n-layer 1000 --n-head 32 \
  --n-embd 4096 --context 1024 -q --out "$TMP/hugerun"

cli_finish
