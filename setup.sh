#!/usr/bin/env bash
# gpt.cpp setup: installs every dependency (idempotent), builds, and runs a job.
#
#   ./setup.sh          set up and build only
#   ./setup.sh demo     set up, build, train a small GPT on the bundled Tiny Shakespeare, generate text
#   ./setup.sh test     set up, build (Release, ASan/UBSan, libFuzzer), run the whole test suite with ctest
#   ./setup.sh bench    set up, build, run the benchmarks against tiktoken and PyTorch (under flock)
#
# Product dependencies are Debian packages; Python tools used only by tests and
# benchmarks (tiktoken, ...) go into .venv, pinned.
set -euo pipefail
cd "$(dirname "$0")"
MODE=${1:-build}
JOBS=${JOBS:-$(nproc)}

log() { printf '== %s\n' "$*"; }

# ---- 1. Debian packages (skipping what is present) -------------------------------------------
APT_PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config git
  libcli11-dev nlohmann-json3-dev libfmt-dev libopenblas-openmp-dev libdnnl-dev libmicrohttpd-dev
  libgtest-dev libgmock-dev
  openmpi-bin libopenmpi-dev
)
# Tests and benchmarks only: Python for the tiktoken peer, clang's libFuzzer.
if [ "$MODE" = test ] || [ "$MODE" = bench ] || [ "$MODE" = venv ]; then
  APT_PACKAGES+=(python3 python3-venv python3-pip clang-14 libclang-rt-14-dev clang-format util-linux)
  # The docs' commands (tests/doc_commands.py) query the server with curl and dump bytes with xxd.
  APT_PACKAGES+=(curl xxd)
  # The PyTorch reference (tests) and peer (benchmarks): Debian's torch, run in the tuned
  # environment of OpenMP OpenBLAS + tcmalloc for benchmarks.
  APT_PACKAGES+=(python3-torch python3-numpy libopenblas0-openmp libtcmalloc-minimal4)
  # The server's playground test drives headless Chromium through Selenium.
  APT_PACKAGES+=(chromium chromium-driver)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# ---- 2. Python tools for tests and benchmarks (pinned, in .venv) ------------------------------
if [ "$MODE" = test ] || [ "$MODE" = bench ] || [ "$MODE" = venv ]; then
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  # Reinstall only when a requirements file changed since the last install.
  stamp=.venv/.requirements.sha256
  want=$(cat requirements-dev.txt requirements-peft.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing pinned Python tools (requirements-dev.txt, requirements-peft.txt)"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
    # PEFT without its dependencies: they are all present, and pip would otherwise replace
    # Debian's torch (see requirements-peft.txt).
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-peft.txt
    echo "$want" > "$stamp"
  fi
fi

# ---- 3. Configure and build -------------------------------------------------------------------
build_tree() { # dir build-type extra-args...
  local dir=$1 type=$2; shift 2
  # Always (re)configure: cheap, and it picks up a .venv made since the last run.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS" ${BUILD_TARGET:+--target "$BUILD_TARGET"}
}
if [ "$MODE" = demo ]; then
  # The main job runs only the gpt binary: build just that (no test suites).
  log "building build/gpt (Release)"
  BUILD_TARGET=gpt build_tree build Release
else
  log "building build/ (Release)"
  build_tree build Release
fi

case "$MODE" in
  build|venv) ;;
  demo)
    # The main job: train a small GPT on the bundled Tiny Shakespeare and let it write.
    log "preparing Tiny Shakespeare (bundled) as character-level token shards"
    build/gpt prepare --input data/tinyshakespeare.txt --out build/shakespeare-char --tokenizer char
    log "training a small GPT on it (${DEMO_STEPS:-4000} steps, a few minutes on 2 cores); checkpoints in build/demo-run"
    rm -rf build/demo-run
    build/gpt train --data build/shakespeare-char --out build/demo-run \
      --n-layer 4 --n-head 4 --n-embd 128 --context 64 -b 12 --steps "${DEMO_STEPS:-4000}" \
      --lr 1e-3 --min-lr 1e-4 --warmup 100 --beta2 0.99 --dropout 0 --shuffle \
      --eval-every 500 --eval-batches 50
    log "the loss curve is build/demo-run/loss.svg; a sample from the trained model:"
    printf "ROMEO:"  # gpt generate prints only the continuation, as Hugging Face does
    build/gpt generate --model build/demo-run --prompt "ROMEO:" --max-new-tokens 600 --temperature 0.8 --seed 1
    echo
    ;;
  test)
    log "building build-asan/ (ASan + UBSan)"
    build_tree build-asan Debug -DGPT_SANITIZE=ON
    log "building build-fuzz/ (clang, libFuzzer)"
    build_tree build-fuzz Debug -DGPT_FUZZ=ON -DGPT_FUZZ_SECONDS="${GPT_FUZZ_SECONDS:-20}" \
      -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_ASM_COMPILER=clang-14
    log "fuzzing the encoder and the parsers, ${GPT_FUZZ_SECONDS:-20} s each"
    ctest --test-dir build-fuzz --output-on-failure -j "$JOBS"
    log "running the test suite (ASan + UBSan)"
    ctest --test-dir build-asan --output-on-failure -j "$JOBS"
    log "running the test suite (Release)"
    ctest --test-dir build --output-on-failure -j "$JOBS"
    ;;
  bench)
    flock /tmp/cpu.lock bench/run_tokenizer_bench.sh
    # Takes the lock per run itself, alternating gpt.cpp and PyTorch.
    bench/run_model_bench.sh
    ;;
  *) echo "setup.sh: unknown mode '$MODE' (use: build, demo, test, bench)" >&2; exit 2 ;;
esac
