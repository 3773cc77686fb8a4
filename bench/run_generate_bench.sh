#!/usr/bin/env bash
# Generation benchmark against its peer, same shapes, same session, same machine:
#   gpt bench generate (f32, bf16, q8 weights)   vs   PyTorch with a KV cache (fp32,
#   bench/torch_generate_bench.py, in the tuned environment of shared/README.md)
# Prefill runs the prompt with the logits of its last position only; decode generates one token
# per step with greedy argmax. Each run takes the CPU lock by itself (flock /tmp/cpu.lock), so do
# NOT run this script under the lock. gpt.cpp and PyTorch alternate, ROUNDS times, the order
# flipping every round; each side is summarised by its best run (other work only slows a run).
#
# Environment: PRESET (gpt2), PROMPT (512), NEW (128), BATCH (1), ROUNDS (3), THREADS (2),
# WEIGHTS ("f32 bf16 q8").
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=${PRESET:-gpt2}
PROMPT=${PROMPT:-512}
NEW=${NEW:-128}
BATCH=${BATCH:-1}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
WEIGHTS=${WEIGHTS:-f32 bf16 q8}
GPT=${GPT:-build/gpt}
TORCH_ENV=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
           LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)
PYTHON=/usr/bin/python3

"$GPT" bench generate --help > /dev/null 2>&1 || { echo "$GPT has no 'bench generate': build it first (./setup.sh)" >&2; exit 1; }
"$PYTHON" -c "import torch" 2> /dev/null || { echo "$PYTHON cannot import torch: apt-get install python3-torch" >&2; exit 1; }
for f in /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4; do
  [ -e "$f" ] || { echo "missing $f: apt-get install libopenblas0-openmp libtcmalloc-minimal4" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shape=(--preset "$PRESET" --prompt-tokens "$PROMPT" --new-tokens "$NEW" --threads "$THREADS")

# run NAME CMD...: one timed run under the lock; its JSON last line goes to $tmp/NAME.jsonl.
run() {
  local name=$1
  shift
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if ! flock /tmp/cpu.lock "$@" > "$tmp/out" 2> "$tmp/err"; then
    cat "$tmp/out" "$tmp/err" >&2
    echo "failed: $*" >&2
    exit 1
  fi
  tail -n 1 "$tmp/out" >> "$tmp/$name.jsonl"
  printf '  %-11s %s | %s  (load before: %s)\n' "$name" "$(grep -E '^prefill:' "$tmp/out" | sed 's/^prefill: *//')" \
    "$(grep -E '^decode:' "$tmp/out" | sed 's/^decode: *//')" "$load"
}

lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
# The decode ceiling: memory read bandwidth, measured in the same session (before and after).
membw() { flock /tmp/cpu.lock "$GPT" bench memory --threads "$THREADS" | tail -n 1 >> "$tmp/memory.jsonl"; }
membw
echo "shape: $PRESET, batch $BATCH, prompt $PROMPT tokens (last-position logits), $NEW new tokens, $THREADS threads, $ROUNDS rounds"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r"
  torch_run=(torch "${TORCH_ENV[@]}" "$PYTHON" bench/torch_generate_bench.py "${shape[@]}" -b "$BATCH")
  ((r % 2)) || run "${torch_run[@]}"
  for w in $WEIGHTS; do
    run "cpp-$w" "$GPT" bench generate "${shape[@]}" --batch "$BATCH" --weights "$w"
  done
  ((r % 2)) && run "${torch_run[@]}"
done
membw

"$PYTHON" - "$tmp" "$WEIGHTS" <<'EOF'
import json, sys
d, weights = sys.argv[1], sys.argv[2].split()
def load(name):
    with open(f"{d}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
torch_runs = load("torch")
# Each side's best run (other work only slows a run down). Decode is given two ways: tokens over
# the whole timed decode, and batch / the median step time, which a few disturbed steps do not move.
def best(runs):
    return (max(r["prefill_tokens_per_s"] for r in runs), max(r["decode_tokens_per_s"] for r in runs),
            max(r["batch"] * 1e3 / r["decode_ms_per_step"] for r in runs if r["decode_ms_per_step"] > 0))
tp, td, tm = best(torch_runs)
print()
hdr = (f"{'system':<14} {'prefill tok/s':>14} {'decode tok/s':>13} {'(median step)':>14} "
       f"{'prefill vs torch':>17} {'decode vs torch':>16}")
print(hdr)
print("-" * len(hdr))
print(f"{'PyTorch f32':<14} {tp:>14.1f} {td:>13.1f} {tm:>14.1f} {'1.00x':>17} {'1.00x':>16}")
out = {"bench": "generate-vs-torch", "torch_prefill_tokens_per_s": tp, "torch_decode_tokens_per_s": td,
       "torch_decode_median_tokens_per_s": tm}
for w in weights:
    p, dd, dm = best(load(f"cpp-{w}"))
    print(f"{'gpt.cpp ' + w:<14} {p:>14.1f} {dd:>13.1f} {dm:>14.1f} {p / tp:>16.2f}x {dd / td:>15.2f}x")
    out[f"{w}_prefill_tokens_per_s"] = p
    out[f"{w}_decode_tokens_per_s"] = dd
    out[f"{w}_decode_median_tokens_per_s"] = dm
with open(f"{d}/memory.jsonl") as f:
    bw = max(json.loads(line)["read_gb_per_s"] for line in f if line.strip())
print(f"\nmemory read bandwidth (gpt bench memory, best of before/after): {bw:.1f} GB/s")
for w in weights:
    r = max(load(f"cpp-{w}"), key=lambda r: r["decode_gb_per_s"])
    print(f"  {w}: a decode step reads {r['decode_mb_per_step']:.0f} MB; at the ceiling that is "
          f"{bw * 1e3 / r['decode_mb_per_step']:.1f} tokens/s; measured {r['decode_gb_per_s']:.1f} GB/s "
          f"({100 * r['decode_gb_per_s'] / bw:.0f} % of the ceiling)")
out["memory_read_gb_per_s"] = bw
print(json.dumps(out))
EOF
