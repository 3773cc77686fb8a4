// Thread count shared by every parallel part of the engine (OpenMP underneath).
#pragma once

namespace gpt {

// Threads the engine uses; defaults to all logical cores (or OMP_NUM_THREADS).
int num_threads();
// Sets the thread count for everything that follows; n <= 0 means "all cores".
void set_num_threads(int n);

}  // namespace gpt
