#!/usr/bin/env bash
# Training benchmark against its peer, same recipe, same session, same machine: nanoGPT's "baby GPT"
# CPU recipe on Tiny Shakespeare at character level (4 layers, 4 heads, 128 dims, block 64, batch 12,
# 2000 steps, AdamW lr 1e-3 -> 1e-4 cosine after 100 warmup steps, betas (0.9, 0.99), weight decay
# 0.1, clip 1.0, dropout 0, no biases, random windows):
#   gpt train --shuffle ...   vs   PyTorch (bench/torch_babygpt.py, tuned environment)
# The char data is prepared into build/ first (gpt prepare --tokenizer char, or the same split
# written by bench/torch_babygpt.py --write-shards while gpt prepare does not exist).
# Each run takes the CPU lock by itself (flock /tmp/cpu.lock), so do NOT run this script under the
# lock: `bench/run_train_bench.sh`. The two sides alternate, ROUNDS times, the order flipping every
# round. Training time excludes the evaluation: for gpt.cpp it is metrics.jsonl's elapsed_s at the
# last step, for PyTorch the timed loop. The median step time (gpt.cpp: from each step's
# tokens_per_s) is shown too: on a shared machine it moves less than the total. Val loss: the
# mean over the first EVAL_BATCHES batches of 12 x 64 of the val split, read in order (gpt train's
# --eval-batches rule), after the last step.
# Each side is summarised by its fastest run; every run is listed with the load average before it.
#
# Environment: ROUNDS (1), STEPS (2000), THREADS (2), EVAL_BATCHES (200), BIAS (0: no biases, as
# nanoGPT's default; 1: biases), GPT (build/gpt), DATA (build/tinyshakespeare-char).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-1}
STEPS=${STEPS:-2000}
THREADS=${THREADS:-2}
EVAL_BATCHES=${EVAL_BATCHES:-200}
BIAS=${BIAS:-0}
GPT=${GPT:-build/gpt}
DATA=${DATA:-build/tinyshakespeare-char}
TEXT=data/tinyshakespeare.txt
TORCH_ENV=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
           LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)
PYTHON=/usr/bin/python3

# (an unknown subcommand's --help prints the top-level help, so look for the command's own flags)
"$GPT" train --help 2>&1 | grep -q -- --grad-accum ||
  { echo "$GPT has no 'train' command: build it first (./setup.sh)" >&2; exit 1; }
"$PYTHON" -c "import torch" 2> /dev/null || { echo "$PYTHON cannot import torch: apt-get install python3-torch" >&2; exit 1; }
for f in /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4; do
  [ -e "$f" ] || { echo "missing $f: apt-get install libopenblas0-openmp libtcmalloc-minimal4" >&2; exit 1; }
done

# The char data, made afresh each time (a second, cheap).
if [ -e "$DATA" ] && [ ! -f "$DATA/dataset.json" ]; then
  echo "$DATA exists and is not a dataset directory (no dataset.json): not replacing it" >&2
  exit 1
fi
rm -rf "$DATA"
if "$GPT" prepare --help 2>&1 | grep -q -- --val-fraction; then
  "$GPT" prepare --input "$TEXT" --out "$DATA" --tokenizer char > /dev/null
  echo "data: $DATA from gpt prepare --tokenizer char"
else
  "$PYTHON" bench/torch_babygpt.py --write-shards "$TEXT" "$DATA" > /dev/null
  echo "data: $DATA from bench/torch_babygpt.py --write-shards (no gpt prepare in $GPT)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bias_cpp=(--no-bias)
bias_torch=()
if [ "$BIAS" = 1 ]; then bias_cpp=(); bias_torch=(--bias); fi

# run NAME CMD...: one timed run under the lock, its output in $tmp/NAME.out.
run() {
  local name=$1
  shift
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if ! flock /tmp/cpu.lock "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"; then
    cat "$tmp/$name.out" "$tmp/$name.err" >&2
    echo "failed: $*" >&2
    exit 1
  fi
  echo "$load" > "$tmp/$name.load"
}

# One line of JSON per run: {"system", "train_s", "ms_per_step", "ms_median", "val_loss", "final_loss", "load"}.
summarise_cpp() {
  "$PYTHON" - "$1/metrics.jsonl" "$2" "$STEPS" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r for r in recs if "loss" in r]
vals = [r for r in recs if "val_loss" in r]
last = steps[-1]
assert last["step"] == int(sys.argv[3]), f"gpt train stopped at step {last['step']}"
median = statistics.median(12 * 64 / r["tokens_per_s"] for r in steps) * 1e3  # each step's own time
print(json.dumps({"system": "gpt.cpp", "train_s": last["elapsed_s"],
                  "ms_per_step": last["elapsed_s"] / last["step"] * 1e3, "ms_median": median,
                  "val_loss": vals[-1]["val_loss"] if vals else None, "final_loss": last["loss"],
                  "load": float(sys.argv[2])}))
EOF
}

summarise_torch() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(json.dumps({"system": "PyTorch", "train_s": r["train_s"], "ms_per_step": r["ms_per_step"],
                  "ms_median": r["ms_median"],
                  "val_loss": r["val_loss"], "final_loss": r["final_loss"], "load": float(sys.argv[2])}))
EOF
}

cpp_run() {
  local out="$tmp/cpp-out-$1"
  run "cpp-$1" "$GPT" train --data "$DATA" --out "$out" --n-layer 4 --n-head 4 --n-embd 128 --context 64 \
    "${bias_cpp[@]}" --dropout 0 --steps "$STEPS" --batch-size 12 --seq-len 64 --grad-accum 1 \
    --lr 1e-3 --min-lr 1e-4 --warmup 100 --schedule cosine --beta1 0.9 --beta2 0.99 --eps 1e-8 \
    --weight-decay 0.1 --grad-clip 1.0 --seed 1337 --threads "$THREADS" --shuffle \
    --eval-every "$STEPS" --eval-batches "$EVAL_BATCHES" -q
  summarise_cpp "$out" "$(cat "$tmp/cpp-$1.load")" | tee -a "$tmp/runs.jsonl" | sed 's/^/  /'
}

torch_run() {
  run "torch-$1" "${TORCH_ENV[@]}" "$PYTHON" bench/torch_babygpt.py --data "$DATA" --steps "$STEPS" \
    --batch-size 12 --seq-len 64 --n-layer 4 --n-head 4 --n-embd 128 "${bias_torch[@]}" --lr 1e-3 --min-lr 1e-4 \
    --warmup 100 --beta1 0.9 --beta2 0.99 --weight-decay 0.1 --grad-clip 1.0 --eval-batches "$EVAL_BATCHES" \
    --threads "$THREADS" --seed 1337
  summarise_torch "$tmp/torch-$1.out" "$(cat "$tmp/torch-$1.load")" | tee -a "$tmp/runs.jsonl" | sed 's/^/  /'
}

lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
echo "recipe: baby GPT 4x4x128, block 64, batch 12, $STEPS steps, $THREADS threads, bias $BIAS, $ROUNDS round(s)"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r"
  if ((r % 2)); then cpp_run "$r"; torch_run "$r"; else torch_run "$r"; cpp_run "$r"; fi
done

"$PYTHON" - "$tmp/runs.jsonl" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = {}
for side in ("gpt.cpp", "PyTorch"):
    mine = [r for r in runs if r["system"] == side]
    best[side] = dict(min(mine, key=lambda r: r["train_s"]), all=[r["train_s"] for r in mine])
print()
hdr = (f"{'system':<8} {'wall s':>8} {'ms/step':>8} {'median ms':>10} {'val loss':>9} {'final loss':>11} "
       f"{'all runs (wall s)':>20}")
print(hdr)
print("-" * len(hdr))
for side, b in best.items():
    val = f"{b['val_loss']:.4f}" if b["val_loss"] is not None else "-"
    print(f"{side:<8} {b['train_s']:>8.1f} {b['ms_per_step']:>8.1f} {b['ms_median']:>10.1f} {val:>9} "
          f"{b['final_loss']:>11.4f} "
          f"{' '.join('%.1f' % t for t in b['all']):>20}")
ratio = best["PyTorch"]["train_s"] / best["gpt.cpp"]["train_s"]
median_ratio = (min(r["ms_median"] for r in runs if r["system"] == "PyTorch") /
                min(r["ms_median"] for r in runs if r["system"] == "gpt.cpp"))
print(f"\nPyTorch wall / gpt.cpp wall = {ratio:.2f}x (fastest run of each; training only, evaluation excluded); "
      f"median step: {median_ratio:.2f}x")
print(json.dumps({"bench": "train-vs-torch", "recipe": "babygpt-shakespeare-char",
                  "cpp_train_s": best["gpt.cpp"]["train_s"], "torch_train_s": best["PyTorch"]["train_s"],
                  "cpp_ms_per_step": best["gpt.cpp"]["ms_per_step"], "torch_ms_per_step": best["PyTorch"]["ms_per_step"],
                  "cpp_val_loss": best["gpt.cpp"]["val_loss"], "torch_val_loss": best["PyTorch"]["val_loss"],
                  "cpp_ms_median": min(r["ms_median"] for r in runs if r["system"] == "gpt.cpp"),
                  "torch_ms_median": min(r["ms_median"] for r in runs if r["system"] == "PyTorch"),
                  "ratio": ratio, "median_ratio": median_ratio}))
EOF
