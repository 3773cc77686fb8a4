// dist::Communicator over NCCL, for tensors in GPU memory (the CUDA backend's gradients and
// parameters). nccl_communicator.cpp is compiled when CMake finds CUDA, NCCL (nccl.h, libnccl) and
// MPI; other builds link nccl_unavailable.cpp, whose make_nccl_communicator says so.
//
// One NCCL communicator over the ranks of the run's MPI communicator (rank 0 makes the unique id,
// MPI broadcasts it), on the CUDA backend's device and stream (Backend::device_index,
// native_stream): dist/ makes no CUDA calls of its own. Every call queues its NCCL work on that
// stream, after the backend's work that wrote the data, and waits for it (Backend::synchronize):
// the caller may use the result on return.
// Reduce-scatter and all-gather take one count per rank in NCCL: equal counts (the model's size a
// multiple of the rank count) run as ncclReduceScatter / ncclAllGather in place, unequal ones as a
// group of ncclReduce / ncclBroadcast, one per rank's segment. gather_to_root is a group of
// ncclSend / ncclRecv. barrier and abort go through MPI (abort calls ncclCommAbort first).
#pragma once
#include <memory>

#include "dist/communicator.h"

namespace gpt {
class Backend;
}

namespace gpt::dist {

// True in builds with nccl_communicator.cpp.
bool nccl_compiled_in();

// NCCL over the ranks of `host` (which must outlive it), for tensors on `be` (a CUDA backend, which
// must outlive it too). Collective: every rank calls it. Throws gpt::Error when this build has no
// NCCL, `be` is not CUDA, or NCCL fails.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, Backend& be);

}  // namespace gpt::dist
