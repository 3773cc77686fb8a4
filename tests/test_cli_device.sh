#!/usr/bin/env bash
# --device on gpt train, eval, logits and bench forward/train-step. `--device cpu-staged` runs the
# CPU's kernels through the device code paths (parameters, gradients and AdamW moments in memory
# that is not host memory, uploads, downloads, parameters_changed): every result must equal
# `--device cpu` bit for bit, training included (clipping, shuffled data, accumulation, dropout,
# samples, and a kill -9 with a resume in the middle). Bad or absent devices: one error line.
#
# Usage: bash tests/test_cli_device.sh PATH_TO_gpt SOURCE_DIR
export LC_ALL=C
G=$1
SRC=$2
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_device_test
# The samples a training run printed (the text between the sample markers).
samples() { sed -n '/^---- sample at step/,/^----$/p' "$@"; }

"$G" prepare --input "$SRC/tests/data/mpi/shakespeare_24k.txt" --out "$TMP/data" --tokenizer char -q \
  >"$TMP/o" 2>"$TMP/e"
report "prepare char data" "$(why_ok $? "$TMP/e")"

MODEL=(--n-layer 2 --n-head 2 --n-embd 32 --context 32)
RUN=(--data "$TMP/data" "${MODEL[@]}" -b 2 --grad-accum 2 -t 32 --steps 10 --lr 3e-3 --warmup 3 --dropout 0.1
  --grad-clip 0.3 --shuffle --seed 5 --threads 2 --eval-every 5 --eval-batches 2 --save-every 4
  --sample-every 5 --sample-tokens 40)

# ---- train: cpu-staged, killed and resumed, equals cpu uninterrupted ----------------------------
"$G" train "${RUN[@]}" --out "$TMP/cpu" >"$TMP/cpu.out" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
[[ -z $why ]] && ! awk -F'"grad_norm":' 'NF > 1 { split($2, a, ","); if (a[1] > 0.3) n++ } END { exit !(n >= 5) }' \
  "$TMP/cpu/metrics.jsonl" && why="clipping never acted: the comparison would not cover it"
report "train --device cpu (the reference; clipping active)" "$why"
GPT_TEST_KILL_AT_STEP=6 "$G" train "${RUN[@]}" --out "$TMP/dev" --device cpu-staged >"$TMP/dev1.out" 2>"$TMP/e"
rc=$?
why=""
[[ $rc -ne 137 ]] && why="expected death by SIGKILL (137), got $rc: $(excerpt "$TMP/e")"
[[ -z $why && $(cat "$TMP/dev/latest") != checkpoint-00000004 ]] && why="latest: $(cat "$TMP/dev/latest")"
report "train --device cpu-staged, kill -9 after step 6 leaves the step-4 checkpoint" "$why"
"$G" train "${RUN[@]}" --out "$TMP/dev" --device cpu-staged --resume >"$TMP/dev2.out" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
[[ -z $why ]] && ! cmp -s <(losses "$TMP/cpu/metrics.jsonl") <(losses "$TMP/dev/metrics.jsonl") &&
  why="metrics differ: $(diff <(losses "$TMP/cpu/metrics.jsonl") <(losses "$TMP/dev/metrics.jsonl") | head -n 3 | tr '\n' ' ')"
for f in model.safetensors checkpoint-00000010/optimizer.safetensors; do
  [[ -z $why ]] && ! cmp -s "$TMP/cpu/$f" "$TMP/dev/$f" && why="$f differs"
done
# The resumed run starts again after step 4, so it prints both samples itself.
[[ -z $why ]] && ! cmp -s <(samples "$TMP/cpu.out") <(samples "$TMP/dev2.out") && why="samples differ"
[[ -z $why && $(samples "$TMP/cpu.out" | grep -c '^---- sample') -ne 2 ]] && why="want 2 samples"
[[ -z $why ]] && ! grep -q "device cpu-staged" "$TMP/dev2.out" && why="the log does not name the device"
report "cpu-staged resumed equals cpu: losses, norms, val losses, weights, moments, samples, bit for bit" "$why"

# A NaN on a device: the host copy is brought down before it is poisoned, and the run stops cleanly.
GPT_TEST_POISON_AT_STEP=3 "$G" train "${RUN[@]}" --out "$TMP/nan" --device cpu-staged -q >"$TMP/o" 2>"$TMP/e"
report "a NaN loss on cpu-staged stops with one error line" "$(why_error_re $? "$TMP/e" "the loss became nan at step 3")"

# ---- eval and logits ------------------------------------------------------------------------------
head -c 3000 "$SRC/tests/data/mpi/shakespeare_24k.txt" >"$TMP/e.txt"
EV=(eval -m "$TMP/cpu" --text "$TMP/e.txt" --seq-len 32 --stride 16 -b 3 --threads 2 -q)
"$G" "${EV[@]}" >"$TMP/ev_cpu" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
if [[ -z $why ]]; then
  "$G" "${EV[@]}" --device cpu-staged >"$TMP/ev_dev" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
fi
[[ -z $why ]] && ! cmp -s <(grep -v '^time:' "$TMP/ev_cpu") <(grep -v '^time:\|^device:' "$TMP/ev_dev") &&
  why="outputs differ: $(diff <(grep -v '^time:' "$TMP/ev_cpu") <(grep -v '^time:' "$TMP/ev_dev") | head -n 4 | tr '\n' ' ')"
[[ -z $why ]] && ! grep -q '^device: *cpu-staged' "$TMP/ev_dev" && why="no device line"
report "eval --device cpu-staged equals cpu (loss, perplexity, JSON)" "$why"

printf '1 2 3 4 5 6\n7 8 9 10 11 12\n' >"$TMP/ids"
printf '2 3 4 5 6 -1\n8 9 10 11 12 13\n' >"$TMP/tg"
LG=(logits -m "$TMP/cpu" --ids "$TMP/ids" --targets "$TMP/tg" --grads)
"$G" "${LG[@]}" -o "$TMP/l_cpu.safetensors" >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
if [[ -z $why ]]; then
  "$G" "${LG[@]}" -o "$TMP/l_dev.safetensors" --device cpu-staged >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
fi
[[ -z $why ]] && ! cmp -s "$TMP/l_cpu.safetensors" "$TMP/l_dev.safetensors" && why="the files differ"
report "logits --grads --device cpu-staged writes the cpu's file byte for byte" "$why"

# ---- bench: the JSON names the device; MFU is null where the peak is unknown ------------------------
BM=(--n-layer 1 --n-head 2 --n-embd 32 --context 32 --vocab-size 64 -b 2 -t 16 --steps 2 --warmup 1 --threads 1)
for dev in cpu cpu-staged; do
  for kind in forward train-step; do
    "$G" bench "$kind" "${BM[@]}" --device "$dev" >"$TMP/o" 2>"$TMP/e"
    why=$(why_ok $? "$TMP/e")
    last=$(tail -n 1 "$TMP/o")
    [[ -z $why && $last != *"\"device\":\"$dev\""* ]] && why="JSON lacks device $dev: $last"
    [[ -z $why && $last != *'"mfu":null'* ]] && why="JSON lacks mfu null: $last"
    [[ -z $why && $last != *'"tokens_per_s":'* ]] && why="JSON lacks tokens_per_s: $last"
    report "bench $kind --device $dev: JSON device, mfu null" "$why"
  done
done

# ---- bad and absent devices --------------------------------------------------------------------------
for dev in tpu cuda; do
  sub="unknown device \"tpu\""
  [[ $dev == cuda ]] && sub="no CUDA GPU|no CUDA backend"
  for cmd in train eval logits bench; do
    rm -rf "$TMP/badout"
    case $cmd in
      train) args=(train --data "$TMP/data" "${MODEL[@]}" --steps 2 -q --out "$TMP/badout") ;;
      eval) args=("${EV[@]}") ;;
      logits) args=("${LG[@]}" -o "$TMP/badout") ;;
      bench) args=(bench train-step "${BM[@]}") ;;
    esac
    "$G" "${args[@]}" --device "$dev" >"$TMP/o" 2>"$TMP/e"
    rc=$?
    if [[ $dev == cuda && $rc -eq 0 ]]; then
      report "$cmd --device cuda (a GPU is present: it ran)" ""
      continue
    fi
    why=$(why_error_re $rc "$TMP/e" "$sub")
    [[ -z $why && -e $TMP/badout ]] && why="$TMP/badout was created"
    report "$cmd --device $dev: one error line, nothing written" "$why"
  done
done
# Packed weights are weight handles a backend holds: the staged one evaluates bf16 as the CPU does.
"$G" eval -m "$TMP/cpu" --text "$TMP/e.txt" --weights bf16 >"$TMP/o1" 2>"$TMP/e1"
r1=$?
"$G" eval -m "$TMP/cpu" --text "$TMP/e.txt" --weights bf16 --device cpu-staged >"$TMP/o2" 2>"$TMP/e2"
r2=$?
why=""
[[ $r1 -ne 0 || $r2 -ne 0 ]] && why="exit status $r1 / $r2: $(tail -1 "$TMP/e1") $(tail -1 "$TMP/e2")"
[[ -z $why && "$(tail -1 "$TMP/o1")" != "$(tail -1 "$TMP/o2")" ]] && why="the results differ: $(tail -1 "$TMP/o1") / $(tail -1 "$TMP/o2")"
[[ -z $why && ! -s $TMP/o1 ]] && why="no output"
report "eval of bf16 weights on cpu-staged: the CPU's output" "$why"

cli_finish
