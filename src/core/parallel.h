// Thread count shared by every parallel part of the engine (OpenMP underneath, and OpenBLAS and
// oneDNN, which are OpenMP builds and so share the same pool of threads).
//
// Two numbers: the ceiling (all the CPUs this process may run on, OMP_NUM_THREADS, or --threads) and
// the team size the engine runs with now, which adapt_threads() lowers while other programs keep
// CPUs busy and raises again when they stop (docs/threads.md). A team of parallel threads runs at
// the speed of its slowest member: on a machine shared with another CPU-bound program, a thread
// that has to share its core makes every other thread wait for it at each barrier, and a step can
// become many times slower than with fewer threads. Results never depend on the team size (the
// kernels and GEMMs split their work the same way for any thread count; tests/test_threads.cpp).
#pragma once
#include <string>

namespace gpt {

// The ceiling: threads the engine may use, sizing every per-thread buffer.
int num_threads();
// Sets the ceiling (n >= 1) and the team size to it; throws gpt::Error (thread_count_problem)
// instead of starting threads that cannot run.
void set_num_threads(int n);

// The most threads any command takes: 8 per CPU of this machine. More only adds overhead, and a
// few thousand exhaust memory (every thread has a stack and an OpenBLAS buffer).
int max_threads();

// Why n threads cannot run here, or "" if they can: n above max_threads(), or more per-thread
// memory (stacks and OpenBLAS's buffers) than the address-space limit (ulimit -v) leaves. OpenBLAS
// would otherwise retry its buffer allocation forever, and libgomp end the process.
std::string thread_count_problem(int n);

// Under an address-space limit, lowers the default ceiling to what fits (an explicit --threads is
// checked by set_num_threads instead). Called once at startup; a no-op without a limit.
void fit_threads_to_address_space();
// The team size now (1 <= active_threads() <= num_threads()).
int active_threads();
// Sets the team size, clamped to [1, num_threads()], as adapt_threads() would (tests, benchmarks).
void set_active_threads(int n);

// A step boundary (a training step, a decode step, a prefill chunk, an evaluation batch): at most
// every 100 ms, measures how much CPU other programs used since the last look (/proc/stat over the
// CPUs this process may use, minus this process's own CPU time) and sets the team size to the CPUs
// they leave free, at least 1 and at most the ceiling. Costs a clock read between looks.
// GPT_ADAPTIVE_THREADS=0 turns it off (the team size stays at the ceiling).
void adapt_threads();

// The arithmetic of adapt_threads(), for tests: the team size for `cpus` usable CPUs of which
// `others` (an average, in CPUs) are busy with other programs, given the current size.
int adapted_team_size(int cpus, double others, int current, int ceiling);

}  // namespace gpt
