#!/usr/bin/env bash
# Speed on a busy machine: gpt.cpp's decode step, 512-token prefill and training step, alone and
# beside one competing CPU-bound program, on all cores (docs/threads.md).
#
#   competitors: none (idle), a busy loop (one thread), a second gpt.cpp training a small model
#   (all cores), PyTorch training the same small model (all cores, bench/torch_babygpt.py)
#
# Measured: `gpt bench generate` on GPT-2 124M (f32 weights; prefill of PROMPT tokens, decode of NEW
# tokens at batch 1) and `gpt bench train-step` on the README demo's shape (4 layers, 128 wide,
# context 64, batch 12, 65-character vocabulary). Each figure is the median step; the table gives
# the ratio to the idle figure. The script holds /tmp/cpu.lock for the whole run (the competitor
# must run inside it), so do NOT run it under the lock.
#
# Environment: GPT (build/gpt), PROMPT (512), NEW (64), STEPS (20), ROUNDS (2), COMPETITORS
# ("busy gpt torch"), and EXTRA_ENV: assignments put before every measured command (e.g.
# "OMP_WAIT_POLICY=active" to compare with libgomp's spinning), and before the gpt.cpp competitor
# (the same program), never before the others.
set -euo pipefail
cd "$(dirname "$0")/.."
GPT=${GPT:-build/gpt}
PROMPT=${PROMPT:-512}
NEW=${NEW:-64}
STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-2}
COMPETITORS=${COMPETITORS:-busy gpt torch}
EXTRA_ENV=${EXTRA_ENV:-}
PYTHON=/usr/bin/python3
TORCH_ENV=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
           LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)

if [ -z "${GPT_CONTENTION_LOCKED:-}" ]; then
  exec env GPT_CONTENTION_LOCKED=1 flock /tmp/cpu.lock "$0" "$@"
fi
[ -x "$GPT" ] || { echo "$GPT: build it first (./setup.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
comp_pid=
cleanup() {
  [ -n "$comp_pid" ] && kill "$comp_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$GPT" prepare --input data/tinyshakespeare.txt --out "$tmp/char" --tokenizer char > /dev/null
demo_shape=(--n-layer 4 --n-head 4 --n-embd 128 --context 64)

start_competitor() {  # name
  case $1 in
    none) comp_pid= ;;
    busy) bash -c 'while :; do :; done' & comp_pid=$! ;;
    gpt)
      env $EXTRA_ENV "$GPT" train --data "$tmp/char" --out "$tmp/comp-run-$RANDOM" "${demo_shape[@]}" -b 12 --steps 1000000 \
        --quiet > /dev/null 2>&1 &
      comp_pid=$! ;;
    torch)
      "${TORCH_ENV[@]}" "$PYTHON" bench/torch_babygpt.py --data "$tmp/char" --threads "$(nproc)" --steps 1000000 \
        > /dev/null 2>&1 &
      comp_pid=$! ;;
  esac
  [ -n "$comp_pid" ] && sleep 3  # let it reach its steady state
  return 0
}
stop_competitor() {
  if [ -n "$comp_pid" ]; then
    kill "$comp_pid" 2>/dev/null || true
    wait "$comp_pid" 2>/dev/null || true
    comp_pid=
  fi
}

measure() {  # name -> appends "name decode_ms prefill_ms train_ms" to $tmp/results
  local gen train
  gen=$(env $EXTRA_ENV "$GPT" bench generate --preset gpt2 --prompt-tokens "$PROMPT" --new-tokens "$NEW" --repeat 1 \
    | tail -n 1)
  train=$(env $EXTRA_ENV "$GPT" bench train-step "${demo_shape[@]}" --vocab-size 65 -b 12 -t 64 --steps "$STEPS" \
    | tail -n 1)
  "$PYTHON" - "$1" "$gen" "$train" >> "$tmp/results" <<'EOF'
import json, sys
g, t = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(sys.argv[1], g["decode_ms_per_step"], g["prefill_ms"], t["ms_per_step"])
EOF
}

lscpu | grep -E "Model name|^CPU\(s\)|^Flags" | sed 's/  */ /g' | cut -c1-200
echo "gpt.cpp $("$GPT" --version 2>/dev/null | head -n 1); EXTRA_ENV='$EXTRA_ENV'"
for ((r = 1; r <= ROUNDS; r++)); do
  for c in none $COMPETITORS; do
    start_competitor "$c"
    measure "$c"
    stop_competitor
    echo "round $r: $(tail -n 1 "$tmp/results")"
  done
done
"$PYTHON" - "$tmp/results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
idle = med["none"]
print(f"{'beside':8s} {'decode ms':>10s} {'x idle':>7s} {'prefill ms':>11s} {'x idle':>7s} {'train ms':>9s} {'x idle':>7s}")
for k, (d, p, t) in med.items():
    print(f"{k:8s} {d:10.2f} {d / idle[0]:7.2f} {p:11.1f} {p / idle[1]:7.2f} {t:9.2f} {t / idle[2]:7.2f}")
EOF
