#!/usr/bin/env bash
# `mpirun -np 2 gpt train` against one process with the same global batch: per-step losses, gradient
# norms and validation losses equal to 1e-5 relative (sequential and shuffled data, with gradient
# accumulation), resuming a 2-rank checkpoint with 1 rank and the other way round, rank 0 alone
# writing, errors that end every rank (one rank failing must not leave the other waiting), and ranks on
# a device backend (cpu-staged: gradients and parameters staged through host memory).
#
# Usage: bash tests/test_cli_mpi.sh PATH_TO_gpt SOURCE_DIR PATH_TO_mpirun
export LC_ALL=C
G=$1
SRC=$2
MPIRUN=${3:-mpirun}
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_tmpdir gpt_mpi_test
why_ok() { [[ $1 -ne 0 ]] && echo "exit status $1, stderr: $(excerpt "$2")"; }

MPI=("$MPIRUN" --oversubscribe)
[[ $(id -u) -eq 0 ]] && MPI+=(--allow-run-as-root)
# ranks N ARGS...: gpt train on N ranks (a hang fails instead of blocking the suite). In an ASan
# build, Open MPI's own allocations left at exit are not ours to report: no leak check under mpirun.
ranks() {
  local n=$1
  shift
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 timeout 120 "${MPI[@]}" -np "$n" "$G" train "$@"
}

# A metrics.jsonl as lines "STEP loss L norm N" and "STEP val V", from step FIRST on.
get() { sed -nE "s/.*\"$2\":([-+0-9.eEnaif]+).*/\1/p" <<<"$1"; }
table() {
  local first=${2:-1} line s
  while IFS= read -r line; do
    s=$(get "$line" step)
    ((s < first)) && continue
    if [[ $line == *val_loss* ]]; then
      echo "$s val $(get "$line" val_loss)"
    else
      echo "$s loss $(get "$line" loss) norm $(get "$line" grad_norm)"
    fi
  done <"$1"
}
# Empty when two tables have the same lines and every number agrees to 1e-5 relative; else why.
differs() {
  local a b
  a=$(table "$1" "${3:-1}")
  b=$(table "$2" "${3:-1}")
  [[ -z $a ]] && { echo "no metrics in $1"; return; }
  [[ $(wc -l <<<"$a") -ne $(wc -l <<<"$b") ]] && { echo "$(wc -l <<<"$a") vs $(wc -l <<<"$b") metrics lines"; return; }
  paste -d'|' <(echo "$a") <(echo "$b") | awk -F'|' '
    function abs(x) { return x < 0 ? -x : x }
    {
      na = split($1, x, " "); nb = split($2, y, " ")
      if (na != nb) { print "line " NR ": " $1 " vs " $2; exit }
      for (i = 1; i <= na; i++) {
        if (x[i] ~ /^[a-z]+$/ || i == 1) { if (x[i] != y[i]) { print "line " NR ": " $1 " vs " $2; exit } ; continue }
        d = abs(x[i] - y[i]); m = abs(x[i]) > abs(y[i]) ? abs(x[i]) : abs(y[i])
        if (!(d <= 1e-5 * m)) { printf "step %s %s: %s vs %s (relative %.2g)\n", x[1], x[i-1], x[i], y[i], d / m; exit }
      }
    }'
}

# ---- data: 24 kB of Shakespeare, character level -------------------------------------------------
"$G" prepare --input "$SRC/tests/data/mpi/shakespeare_24k.txt" --out "$TMP/data" --tokenizer char -q \
  >"$TMP/o" 2>"$TMP/e"
report "prepare char data" "$(why_ok $? "$TMP/e")"

MODEL=(--n-layer 2 --n-head 2 --n-embd 32 --context 32)
RUN=(--data "$TMP/data" "${MODEL[@]}" -t 32 --steps 8 --lr 3e-3 --warmup 2 --dropout 0 --seed 3 --threads 1
  --eval-every 4 --eval-batches 2 -q)

# ---- 2 ranks x B=2 == 1 process x B=4, sequential and shuffled ------------------------------------
for mode in seq shuffle; do
  extra=()
  [[ $mode == shuffle ]] && extra=(--shuffle)
  "$G" train "${RUN[@]}" "${extra[@]}" -b 4 --out "$TMP/one_$mode" >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
  if [[ -z $why ]]; then
    ranks 2 "${RUN[@]}" "${extra[@]}" -b 2 --out "$TMP/two_$mode" >"$TMP/o" 2>"$TMP/e"
    why=$(why_ok $? "$TMP/e")
  fi
  [[ -z $why ]] && why=$(differs "$TMP/one_$mode/metrics.jsonl" "$TMP/two_$mode/metrics.jsonl")
  [[ -z $why && $(grep -c val_loss "$TMP/two_$mode/metrics.jsonl") -ne 2 ]] && why="want 2 val_loss lines"
  report "2 ranks x B=2 equal 1 process x B=4 ($mode): losses, grad norms, val losses" "$why"
done

# ---- with accumulation: 2 ranks x B=1 x accum 2 == 1 process x B=2 x accum 2 -----------------------
"$G" train "${RUN[@]}" -b 2 --grad-accum 2 --out "$TMP/one_acc" >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
if [[ -z $why ]]; then
  ranks 2 "${RUN[@]}" -b 1 --grad-accum 2 --out "$TMP/two_acc" >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
fi
[[ -z $why ]] && why=$(differs "$TMP/one_acc/metrics.jsonl" "$TMP/two_acc/metrics.jsonl")
report "2 ranks x B=1 x accum 2 equal 1 process x B=2 x accum 2" "$why"

# ---- rank 0 alone writes; the checkpoint is in the one-process format ------------------------------
why=""
d=$TMP/two_seq
[[ $(grep -c '"loss"' "$d/metrics.jsonl") -ne 8 ]] && why="metrics.jsonl has $(grep -c '"loss"' "$d/metrics.jsonl") step lines, want 8"
[[ -z $why && $(cat "$d/latest") != checkpoint-00000008 ]] && why="latest: $(cat "$d/latest")"
[[ -z $why && ! -s $d/loss.svg ]] && why="no loss.svg"
[[ -z $why ]] && ! grep -q '"ranks": 2' "$d/checkpoint-00000008/trainer_state.json" && why="trainer_state.json lacks ranks: 2"
[[ -z $why && $(stat -c %s "$d/checkpoint-00000008/optimizer.safetensors") -ne \
  $(stat -c %s "$TMP/one_seq/checkpoint-00000008/optimizer.safetensors") ]] && why="optimizer.safetensors sizes differ"
[[ -z $why ]] && ls -a "$d" | grep -q tmp && why="temporary files left: $(ls -a "$d" | tr '\n' ' ')"
report "rank 0 alone writes metrics, plot and a one-process checkpoint" "$why"

# ---- resume across rank counts -------------------------------------------------------------------
# 2 ranks save at step 4 and stop after 6 (as a kill would leave it); 1 process x B=4 resumes.
GPT_TEST_STOP_AFTER_STEP=6 ranks 2 "${RUN[@]}" -b 2 --save-every 4 --out "$TMP/r21" >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
[[ -z $why && $(cat "$TMP/r21/latest") != checkpoint-00000004 ]] && why="latest: $(cat "$TMP/r21/latest")"
if [[ -z $why ]]; then
  "$G" train "${RUN[@]}" -b 4 --save-every 4 --out "$TMP/r21" --resume >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
fi
[[ -z $why ]] && why=$(differs "$TMP/one_seq/metrics.jsonl" "$TMP/r21/metrics.jsonl" 5)
[[ -z $why ]] && why=$(differs "$TMP/one_seq/metrics.jsonl" "$TMP/r21/metrics.jsonl")
[[ -z $why && -s $TMP/e ]] && why="unexpected stderr: $(excerpt "$TMP/e")"
report "2-rank checkpoint at step 4 resumed by 1 process x B=4: steps 5-8 equal the 1-process run" "$why"
# And the other way: 1 process saves at 4, 2 ranks x B=2 resume.
GPT_TEST_STOP_AFTER_STEP=4 "$G" train "${RUN[@]}" -b 4 --save-every 4 --out "$TMP/r12" >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
if [[ -z $why ]]; then
  ranks 2 "${RUN[@]}" -b 2 --save-every 4 --out "$TMP/r12" --resume >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
fi
[[ -z $why ]] && why=$(differs "$TMP/one_seq/metrics.jsonl" "$TMP/r12/metrics.jsonl")
report "1-process checkpoint resumed by 2 ranks x B=2 equals the 1-process run" "$why"
# A rank count that changes the global batch is allowed, with one warning.
GPT_TEST_STOP_AFTER_STEP=4 ranks 2 "${RUN[@]}" -b 2 --save-every 4 --out "$TMP/rw" >"$TMP/o" 2>"$TMP/e"
"$G" train "${RUN[@]}" -b 2 --out "$TMP/rw" --resume >"$TMP/o" 2>"$TMP/e"
rc=$?
why=$(why_ok $rc "$TMP/e")
[[ -z $why && $(grep -c "warning: resuming with 1 rank where the checkpoint was written with 2" "$TMP/e") -ne 1 ]] &&
  why="want one warning, stderr: $(excerpt "$TMP/e")"
report "resuming with another global batch warns once" "$why"

# ---- device memory: cpu-staged ranks stage gradients and parameters through host buffers -------------
# The same MPI sums on the same values: equal to the CPU's 2-rank run bit for bit, and so to one
# process to 1e-5; also through a save and a resume, and resumed by one process.
losses() { sed -E 's/"elapsed_s":[^,]*,//; s/,"tokens_per_s":[^,}]*//' "$1"; }
for mode in seq shuffle; do
  extra=()
  [[ $mode == shuffle ]] && extra=(--shuffle)
  ranks 2 "${RUN[@]}" "${extra[@]}" -b 2 --device cpu-staged --out "$TMP/staged_$mode" >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
  [[ -z $why ]] && why=$(differs "$TMP/one_$mode/metrics.jsonl" "$TMP/staged_$mode/metrics.jsonl")
  [[ -z $why ]] && ! cmp -s <(losses "$TMP/two_$mode/metrics.jsonl") <(losses "$TMP/staged_$mode/metrics.jsonl") &&
    why="metrics differ from the cpu 2-rank run"
  [[ -z $why ]] && ! cmp -s "$TMP/two_$mode/model.safetensors" "$TMP/staged_$mode/model.safetensors" &&
    why="weights differ from the cpu 2-rank run"
  [[ -z $why ]] && ! cmp -s "$TMP/two_$mode/checkpoint-00000008/optimizer.safetensors" \
    "$TMP/staged_$mode/checkpoint-00000008/optimizer.safetensors" && why="moments differ from the cpu 2-rank run"
  report "2 ranks --device cpu-staged ($mode): 1 process to 1e-5, the cpu 2-rank run bit for bit" "$why"
done
GPT_TEST_STOP_AFTER_STEP=6 ranks 2 "${RUN[@]}" -b 2 --save-every 4 --device cpu-staged --out "$TMP/rs" \
  >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
cp -r "$TMP/rs" "$TMP/rs1"
if [[ -z $why ]]; then
  ranks 2 "${RUN[@]}" -b 2 --save-every 4 --device cpu-staged --out "$TMP/rs" --resume >"$TMP/o" 2>"$TMP/e"
  why=$(why_ok $? "$TMP/e")
fi
[[ -z $why ]] && ! cmp -s <(losses "$TMP/two_seq/metrics.jsonl") <(losses "$TMP/rs/metrics.jsonl") &&
  why="metrics differ from the uninterrupted cpu 2-rank run"
[[ -z $why ]] && ! cmp -s "$TMP/two_seq/model.safetensors" "$TMP/rs/model.safetensors" && why="weights differ"
report "2 cpu-staged ranks saved at step 4 and resumed equal the uninterrupted run bit for bit" "$why"
"$G" train "${RUN[@]}" -b 4 --save-every 4 --device cpu-staged --out "$TMP/rs1" --resume >"$TMP/o" 2>"$TMP/e"
why=$(why_ok $? "$TMP/e")
[[ -z $why ]] && why=$(differs "$TMP/one_seq/metrics.jsonl" "$TMP/rs1/metrics.jsonl")
report "the 2-rank cpu-staged checkpoint resumed by 1 cpu-staged process equals 1 process" "$why"
# No GPU: every rank fails to make the CUDA backend together; rank 0 reports it once. (On a GPU
# machine the run goes ahead on NCCL.)
ranks 2 "${RUN[@]}" -b 2 --device cuda --out "$TMP/cuda" >"$TMP/o" 2>"$TMP/e"
rc=$?
why=""
if [[ $rc -ne 0 ]]; then
  [[ $rc -eq 124 ]] && why="the run hung (timeout)"
  [[ -z $why && $(grep -cE "^gpt: error: .*(no CUDA GPU|no CUDA backend)" "$TMP/e") -ne 1 ]] &&
    why="want one error line from rank 0: $(excerpt "$TMP/e")"
  [[ -z $why ]] && grep -q "\[rank" "$TMP/e" && why="aborted instead of a clean stop: $(excerpt "$TMP/e")"
fi
report "2 ranks --device cuda without a GPU: one error line" "$why"

# ---- errors ----------------------------------------------------------------------------------------
# A NaN loss: every rank sees it (the loss is global); rank 0 reports it once, no abort.
GPT_TEST_POISON_AT_STEP=3 ranks 2 "${RUN[@]}" -b 2 --out "$TMP/nan" >"$TMP/o" 2>"$TMP/e"
rc=$?
why=""
[[ $rc -eq 0 || $rc -eq 124 ]] && why="exit status $rc"
[[ -z $why && $(grep -c "^gpt: error: the loss became nan at step 3" "$TMP/e") -ne 1 ]] &&
  why="want one error line from rank 0: $(excerpt "$TMP/e")"
[[ -z $why ]] && grep -q "MPI_ABORT\|\[rank" "$TMP/e" && why="aborted instead of a clean stop: $(excerpt "$TMP/e")"
report "a NaN loss on 2 ranks: one clean error from rank 0" "$why"
# Bad settings: every rank refuses them; one line, nothing written.
ranks 2 "${RUN[@]}" -b 2 --out "$TMP/bad" --weight-decay -1 >"$TMP/o" 2>"$TMP/e"
rc=$?
why=""
[[ $rc -eq 0 || $rc -eq 124 ]] && why="exit status $rc"
[[ -z $why && $(grep -c "^gpt: error: --weight-decay must not be negative" "$TMP/e") -ne 1 ]] &&
  why="want one error line: $(excerpt "$TMP/e")"
[[ -z $why && -e $TMP/bad ]] && why="$TMP/bad was created"
report "bad settings on 2 ranks: one error line, nothing written" "$why"
# An error on rank 1 alone: rank 0 must not wait for it forever.
GPT_TEST_FAIL_ON_RANK=1:3 ranks 2 "${RUN[@]}" -b 2 --out "$TMP/one_rank" >"$TMP/o" 2>"$TMP/e"
rc=$?
why=""
[[ $rc -eq 0 ]] && why="exit status 0"
[[ $rc -eq 124 ]] && why="the run hung (timeout)"
[[ -z $why && $(grep -c "^gpt: error: \[rank 1\] a test error on rank 1 at step 3" "$TMP/e") -ne 1 ]] &&
  why="want the rank's error line: $(excerpt "$TMP/e")"
report "an error on one rank ends every rank, naming the rank" "$why"

cli_finish
