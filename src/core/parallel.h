// Thread count shared by every parallel part of the engine (OpenMP underneath).
#pragma once

namespace gpt {

// Threads the engine uses by default: all logical cores, or OMP_NUM_THREADS if set.
int num_threads();

}  // namespace gpt
