// How backend_for() finds the backends. The CUDA one comes from backend/cuda/ when the build found
// the CUDA toolkit, and from cuda_unavailable.cpp otherwise (CMake picks the file, so no #ifdef).
#pragma once
#include <memory>

#include "backend/backend.h"

namespace gpt {

// Makes the CUDA backend on the current device, with bf16 (mixed precision) or fp32 activations.
// Throws gpt::Error when the build has none or when no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(ActType act);
// True in builds that compiled backend/cuda/.
bool cuda_compiled_in();

}  // namespace gpt
