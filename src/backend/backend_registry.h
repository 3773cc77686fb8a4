// How backend_for() finds the backends. The CUDA one comes from backend/cuda/ when the build found
// the CUDA toolkit, and from cuda_unavailable.cpp otherwise (CMake picks the file, so no #ifdef).
#pragma once
#include <memory>

#include "backend/backend.h"

namespace gpt {

// Makes the CUDA backend, with bf16 (mixed precision) or fp32 activations, on the GPU of this local
// rank (its local rank modulo the machine's GPU count: ranks sharing a machine take one GPU each).
// Throws gpt::Error when the build has none or when no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(ActType act, int local_rank);
// True in builds that compiled backend/cuda/.
bool cuda_compiled_in();

}  // namespace gpt
