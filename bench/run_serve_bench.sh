#!/usr/bin/env bash
# gpt serve under load: aggregate decode throughput against the number of concurrent streaming
# clients (continuous batching should make 8 clients several times faster in total than 1), and
# the issue's load test (32 concurrent streams, zero errors). bench/serve_load.py is the client.
# The whole run (server and clients) holds the CPU lock: do NOT run this script under the lock.
#
# Environment: PRESET (gpt2; random weights: throughput does not depend on them), THREADS (2),
# PARALLEL (8 slots), DURATION (10 s per client count), CLIENTS ("1 2 4 8"), MAX_TOKENS (32),
# LOAD_CLIENTS (32), LOAD_DURATION (10; the issue's figure is 60), WEIGHTS (as stored: f32),
# SWEEP (1; 0 runs the load test only).
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=${PRESET:-gpt2}
THREADS=${THREADS:-2}
PARALLEL=${PARALLEL:-8}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-1 2 4 8}
MAX_TOKENS=${MAX_TOKENS:-32}
LOAD_CLIENTS=${LOAD_CLIENTS:-32}
LOAD_DURATION=${LOAD_DURATION:-10}
WEIGHTS=${WEIGHTS:-}
SWEEP=${SWEEP:-1}
GPT=${GPT:-build/gpt}
PYTHON=${PYTHON:-python3}

"$GPT" serve --help > /dev/null 2>&1 || { echo "$GPT has no 'serve': build it first (./setup.sh)" >&2; exit 1; }
# A random model of the preset's shape, made once and kept (the gpt2 preset: 124M parameters).
MODEL=${MODEL:-/tmp/gpt_serve_bench_$PRESET}
if [[ ! -f $MODEL/model.safetensors ]]; then
  echo "making a random $PRESET model in $MODEL"
  "$GPT" init --preset "$PRESET" --seed 1 --out "$MODEL" > /dev/null
fi

tmp=$(mktemp -d)
cleanup() {
  [[ -n ${SERVER:-} ]] && kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
echo "model: $PRESET (random weights${WEIGHTS:+, $WEIGHTS}), $PARALLEL slots, $THREADS threads, $MAX_TOKENS tokens per request"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Everything below runs under the lock, in one shell: the server and its clients.
export GPT MODEL THREADS PARALLEL DURATION CLIENTS MAX_TOKENS LOAD_CLIENTS LOAD_DURATION WEIGHTS PYTHON SWEEP tmp
flock /tmp/cpu.lock bash -c '
  set -euo pipefail
  OMP_NUM_THREADS=$THREADS "$GPT" serve --model "$MODEL" --port 0 --parallel "$PARALLEL" --threads "$THREADS" \
    ${WEIGHTS:+--weights "$WEIGHTS"} 2> "$tmp/server.err" &
  SERVER=$!
  trap "kill $SERVER 2> /dev/null; wait $SERVER 2> /dev/null || true" EXIT
  for _ in $(seq 600); do
    grep -q "listening on" "$tmp/server.err" 2> /dev/null && break
    kill -0 $SERVER 2> /dev/null || { cat "$tmp/server.err" >&2; exit 1; }
    sleep 0.1
  done
  PORT=$(grep -o "listening on http://[0-9.]*:[0-9]*" "$tmp/server.err" | grep -o "[0-9]*$")
  if [[ $SWEEP != 0 ]]; then
    echo "== sweep: aggregate decode throughput against concurrent clients"
    "$PYTHON" bench/serve_load.py sweep --port "$PORT" --clients $CLIENTS --duration "$DURATION" \
      --max-tokens "$MAX_TOKENS" | tee "$tmp/sweep.out"
  fi
  echo "== load: $LOAD_CLIENTS concurrent streams for $LOAD_DURATION s"
  "$PYTHON" bench/serve_load.py load --port "$PORT" --clients "$LOAD_CLIENTS" --duration "$LOAD_DURATION" \
    --max-tokens "$MAX_TOKENS" | tee "$tmp/load.out"
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -E "^gpt_(decode_steps|decode_step_rows|generated_tokens|requests_total|requests_cancelled)" || true
'
