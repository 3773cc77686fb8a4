#!/usr/bin/env bash
# `gpt lora init|merge`, `gpt logits --adapter` and `gpt bench train-step --lora-r|--freeze-below`
# end to end on a tiny model, and their one-line errors. The numbers themselves are checked by
# tests/test_lora.cpp and tests/torch_lora_conformance.py; here the contract of the commands.
#
# Usage: bash tests/test_cli_lora.sh PATH_TO_gpt
# Prints "ok - NAME" / "not ok - NAME: DETAILS" per check and "N passed, M failed"; exits 1 on failure.

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
export GPT_NO_PROGRESS=1
cli_gpt_arg "$@"
cli_tmpdir gpt_cli_lora

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
# expect_error NAME SUBSTRING ARGS...: one "gpt: error:" line that mentions SUBSTRING, exit 1.
expect_error() {
  local name=$1 sub=$2
  shift 2
  run "$@"
  local why=""
  if [[ $RC -ne 1 ]]; then
    why="exit status $RC (expected 1)"
  elif [[ $(wc -l <"$TMP/err") -ne 1 ]] || ! grep -q '^gpt: error: ' "$TMP/err"; then
    why="stderr is not one 'gpt: error:' line: $(excerpt "$TMP/err")"
  elif ! grep -qF -- "$sub" "$TMP/err"; then
    why="the error does not mention '$sub': $(excerpt "$TMP/err")"
  fi
  report "$name" "$why"
}

B=$TMP/base
run init --n-layer 2 --n-head 2 --n-embd 16 --context 32 --vocab-size 50 --out "$B"
report "init a tiny base model" "$(why_run)"
printf '1 2 3 4 5 6\n7 8 9 10 11 12\n' >"$TMP/ids.txt"
printf '2 3 4 5 6 -1\n8 9 10 11 12 13\n' >"$TMP/targets.txt"

run lora init --model "$B" --out "$TMP/ad" --r 4 --alpha 8 --targets c_attn,mlp.c_proj
why=$(why_run)
# 2 layers x (c_attn 4 x (16 + 48) + mlp.c_proj 4 x (64 + 16)) = 1,152
[[ -z $why ]] && ! grep -q "1,152 adapter parameters" "$TMP/out" && why="wrong count: $(excerpt "$TMP/out")"
[[ -z $why ]] && ! grep -q '"peft_type": "LORA"' "$TMP/ad/adapter_config.json" && why="no peft_type in adapter_config.json"
[[ -z $why ]] && [[ ! -s $TMP/ad/adapter_model.safetensors ]] && why="no adapter_model.safetensors"
report "lora init writes a PEFT adapter directory" "$why"

run logits --model "$B" --adapter "$TMP/ad" --ids "$TMP/ids.txt" --targets "$TMP/targets.txt" --grads --out "$TMP/a.st"
why=$(why_run)
[[ -z $why ]] && ! grep -q "8 gradients" "$TMP/out" && why="not the 8 adapter gradients: $(excerpt "$TMP/out")"
[[ -z $why ]] && ! grep -q "grad.base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight" "$TMP/a.st" &&
  why="no PEFT-named gradient in the output"
report "logits --adapter --grads writes the adapters' gradients" "$why"

run lora merge --model "$B" --adapter "$TMP/ad" --out "$TMP/merged"
why=$(why_run)
[[ -z $why ]] && [[ ! -s $TMP/merged/model.safetensors || ! -s $TMP/merged/config.json ]] && why="no model directory"
[[ -z $why ]] && run logits --model "$TMP/merged" --ids "$TMP/ids.txt" --out "$TMP/m.st" && why=$(why_run)
report "lora merge writes a model directory that runs" "$why"

for flag in "--lora-r 4" "--freeze-below 1"; do
  # shellcheck disable=SC2086
  run bench train-step --n-layer 2 --n-head 2 --n-embd 32 --vocab-size 100 -b 2 -t 16 --steps 2 --warmup 0 $flag
  why=$(why_run)
  [[ -z $why ]] && ! grep -q "^trainable: " "$TMP/out" && why="no 'trainable:' line: $(excerpt "$TMP/out")"
  report "bench train-step $flag" "$why"
done

expect_error "error: an unknown target module" "q_proj" lora init --model "$B" --out "$TMP/never" --targets q_proj
expect_error "error: rank 0" "rank" lora init --model "$B" --out "$TMP/never" --r 0
expect_error "error: a missing adapter" "adapter_config.json" lora merge --model "$B" --adapter "$TMP/nothing" --out "$TMP/never"
expect_error "error: merge onto its own base" "differ" lora merge --model "$B" --adapter "$TMP/ad" --out "$B"
run init --n-layer 2 --n-head 2 --n-embd 32 --context 32 --vocab-size 50 --out "$TMP/wide"
expect_error "error: an adapter for another width" "expected [4, 32]" logits --model "$TMP/wide" --adapter "$TMP/ad" --ids "$TMP/ids.txt" --out "$TMP/never.st"
# The adapters run through the backend's ops: on cpu-staged the same logits, loss and gradients, bit for bit.
run logits --model "$B" --adapter "$TMP/ad" --ids "$TMP/ids.txt" --targets "$TMP/targets.txt" --grads --out "$TMP/s.st" --device cpu-staged
why=$(why_run)
[[ -z $why ]] && ! cmp -s "$TMP/a.st" "$TMP/s.st" && why="$TMP/s.st differs from the cpu's $TMP/a.st"
report "logits --adapter --grads on cpu-staged: the cpu's file, byte for byte" "$why"

cli_finish
