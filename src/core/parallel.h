// Thread count shared by every parallel part of the engine (OpenMP underneath, and OpenBLAS,
// which is the OpenMP build and so shares the same pool of threads).
#pragma once

namespace gpt {

// Threads the engine uses by default: all logical cores, or OMP_NUM_THREADS if set.
int num_threads();
// Sets the thread count for the engine's loops and its GEMMs (n >= 1).
void set_num_threads(int n);

}  // namespace gpt
