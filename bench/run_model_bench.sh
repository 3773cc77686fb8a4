#!/usr/bin/env bash
# Model benchmark against its peer, same shapes, same session, same machine:
#   gpt bench train-step / forward   vs   PyTorch (bench/torch_gpt_bench.py, tuned environment)
# plus `gpt bench gemm`, the fp32 sgemm ceiling the achieved GFLOP/s are compared with.
# Each run takes the CPU lock by itself (flock /tmp/cpu.lock), so do NOT run this script under
# the lock: `bench/run_model_bench.sh`. gpt.cpp and PyTorch alternate, ROUNDS times, and the order
# flips every round, so drift on the machine hits both sides alike. Other work only adds time, so
# each side is summarised by its least disturbed run (lowest median step time); every run's median
# and the load average before it are printed, to judge how quiet the machine was.
#
# Environment: PRESET (gpt2), B (4), T (64), ROUNDS (3), THREADS (2), STEPS (10), WARMUP (2).
# PyTorch runs as shared/README.md prescribes: OpenMP OpenBLAS and tcmalloc preloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=${PRESET:-gpt2}
B=${B:-4}
T=${T:-64}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
GPT=${GPT:-build/gpt}
TORCH_ENV=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
           LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)
PYTHON=/usr/bin/python3

"$GPT" bench train-step --help > /dev/null 2>&1 || { echo "$GPT has no 'bench train-step': build it first (./setup.sh)" >&2; exit 1; }
"$PYTHON" -c "import torch" 2> /dev/null || { echo "$PYTHON cannot import torch: apt-get install python3-torch" >&2; exit 1; }
for f in /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4; do
  [ -e "$f" ] || { echo "missing $f: apt-get install libopenblas0-openmp libtcmalloc-minimal4" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shape=(--preset "$PRESET" -b "$B" -t "$T" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS")

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
  printf '  %-13s %s  (load before: %s)\n' "$name" "$(grep -E '^step:' "$tmp/out" | sed 's/^step: *//')" "$load"
}

lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
echo "shape: $PRESET, B=$B, T=$T, $THREADS threads, $STEPS timed steps after $WARMUP warm-up, $ROUNDS rounds"
echo "step: zero_grad + forward + backward + AdamW (lr 1e-4, wd 0.1 on 2-D tensors), dropout 0, no gradient"
echo "      clipping on either side (nanoGPT's step in shared/baselines.md also clips to 1.0)"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r"
  run gemm "$GPT" bench gemm --threads "$THREADS" --rows $((B * T))
  cpp_train=(cpp-train "$GPT" bench train-step "${shape[@]}" --dropout 0)
  torch_train=(torch-train "${TORCH_ENV[@]}" "$PYTHON" bench/torch_gpt_bench.py --mode train-step "${shape[@]}")
  cpp_fwd=(cpp-forward "$GPT" bench forward "${shape[@]}" --dropout 0)
  torch_fwd=(torch-forward "${TORCH_ENV[@]}" "$PYTHON" bench/torch_gpt_bench.py --mode forward "${shape[@]}")
  if ((r % 2)); then
    run "${cpp_train[@]}"; run "${torch_train[@]}"; run "${cpp_fwd[@]}"; run "${torch_fwd[@]}"
  else
    run "${torch_train[@]}"; run "${cpp_train[@]}"; run "${torch_fwd[@]}"; run "${cpp_fwd[@]}"
  fi
done

"$PYTHON" - "$tmp" <<'EOF'
import json, sys
d = sys.argv[1]
def load(name):
    with open(f"{d}/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
gemm = load("gemm")
ceiling = max(g["gflops_per_s"] for g in gemm)            # square sgemm, best round
step_ceiling = max(g["step_matmul_gflops_per_s"] for g in gemm)  # sgemm at this step's shapes
print()
print(f"sgemm ceiling: {ceiling:.1f} GFLOP/s square {gemm[0]['size']}^3 "
      f"(rounds: {', '.join('%.1f' % g['gflops_per_s'] for g in gemm)}); "
      f"{step_ceiling:.1f} GFLOP/s at the shapes of a GPT-2 124M step with B*T rows")
print()
# Other work on the machine only ever adds time, so each side is represented by its least
# disturbed run: the lowest of the runs' median step times (all of them are listed too).
hdr = f"{'':<11} {'system':<8} {'ms/step':>8} {'medians of all runs':>26} {'best step':>10} {'tokens/s':>9} {'GFLOP/s':>8} {'of sgemm':>9} {'of step sgemm':>14}"
print(hdr)
print("-" * len(hdr))
ratios, best_ratios = {}, {}
for mode in ("train", "forward"):
    med, bst = {}, {}
    for side in ("cpp", "torch"):
        runs = load(f"{side}-{mode}")
        top = min(runs, key=lambda r: r["ms_per_step"])
        m = top["ms_per_step"]
        med[side] = m
        best = min(r["ms_best"] for r in runs)
        bst[side] = best
        gf, tok = top["gflops_per_s"], top["tokens_per_s"]
        runs_text = " ".join(f"{r['ms_per_step']:.0f}" for r in runs)
        name = "gpt.cpp" if side == "cpp" else "PyTorch"
        label = "train-step" if mode == "train" else "forward"
        print(f"{label:<11} {name:<8} {m:>8.1f} {runs_text:>26} {best:>10.1f} {tok:>9.0f} "
              f"{gf:>8.1f} {gf / ceiling:>8.0%} {gf / step_ceiling:>13.0%}")
    ratios[mode] = med["torch"] / med["cpp"]
    best_ratios[mode] = bst["torch"] / bst["cpp"]
print()
for mode in ratios:
    print(f"{'train-step' if mode == 'train' else 'forward':<10}: PyTorch ms / gpt.cpp ms = {ratios[mode]:.2f}x "
          f"(least disturbed run's median step), {best_ratios[mode]:.2f}x (best single step)")
print(json.dumps({"bench": "model-vs-torch", "sgemm_gflops_per_s": ceiling, "step_sgemm_gflops_per_s": step_ceiling,
                  "train_ratio": ratios["train"], "forward_ratio": ratios["forward"],
                  "train_ratio_best": best_ratios["train"], "forward_ratio_best": best_ratios["forward"]}))
EOF
