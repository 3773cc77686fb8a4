// The NCCL communicator of a build without NCCL (or without CUDA or MPI): asking for it is an
// error, and CUDA ranks stage their collectives through host memory instead (dist/param_sync.h).
#include "core/error.h"
#include "dist/nccl_communicator.h"

namespace gpt::dist {

bool nccl_compiled_in() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, Backend&) {
  fail("this build of gpt has no NCCL (CUDA, nccl.h and libnccl, and MPI are all needed at build time)");
}

}  // namespace gpt::dist
