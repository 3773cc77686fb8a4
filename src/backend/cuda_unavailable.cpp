// The CUDA backend of a build without the CUDA toolkit: asking for it is a clear error.
#include "backend/backend_registry.h"
#include "core/error.h"

namespace gpt {

std::unique_ptr<Backend> make_cuda_backend(ActType, int) {
  fail("this build of gpt has no CUDA backend (the CUDA toolkit was not found at build time)");
}
bool cuda_compiled_in() { return false; }

}  // namespace gpt
