#!/usr/bin/env bash
# The packed_linear table of docs/quantization.md: every weight type at the GPT-2 124M shapes,
# one decode row (N=1) and a 512-token prefill, 2 threads. The whole table holds /tmp/cpu.lock.
#   bench/packed_table.sh [build/gpt] [extra flags for gpt bench packed]
set -euo pipefail
if [[ -z ${GPT_HOLDS_CPU_LOCK:-} ]]; then
  exec env GPT_HOLDS_CPU_LOCK=1 flock /tmp/cpu.lock "$0" "$@"
fi
GPT=${1:-build/gpt}
shift || true
echo "| W (OUT x IN) | type | N=1 ms | N=1 GB/s | N=512 ms | N=512 GFLOP/s |"
echo "|---|---|---:|---:|---:|---:|"
for shape in "2304 768" "3072 768" "768 3072" "50257 768"; do
  set -- $shape "$@"
  out=$1 in=$2
  shift 2
  for type in f32 bf16 q8; do
    one=$("$GPT" bench packed --type $type --n 1 --in $in --out $out --threads 2 --repeat 10 "$@" | tail -1)
    many=$("$GPT" bench packed --type $type --n 512 --in $in --out $out --threads 2 --repeat 3 --cold-mb 0 "$@" | tail -1)
    python3 - "$one" "$many" "$out x $in" $type <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| {sys.argv[3]} | {sys.argv[4]} | {a['ms']:.3f} | {a['gb_per_s']:.1f} | {b['ms']:.2f} | {b['gflops_per_s']:.0f} |")
PY
  done
done
