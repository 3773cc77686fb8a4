// The two big collectives of a data-parallel step, on tensors in backend memory: summing the
// gradients into each rank's shard (reduce-scatter) and handing every rank the updated shards
// (all-gather). Where those tensors live decides how they travel:
//   Local   one rank: nothing moves;
//   Direct  backend memory is host memory (the CPU): the run's communicator (MPI) works on it;
//   Staged  device memory, host communicator: download to a host buffer, MPI, upload;
//   Nccl    device memory, NCCL: the collective runs on the device pointers themselves.
// choose_sync_path is the rule, a pure function; ParamSync carries it out. See docs/distributed.md.
#pragma once
#include <cstddef>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "dist/communicator.h"

namespace gpt::dist {

enum class SyncPath { Local, Direct, Staged, Nccl };
std::string_view sync_path_name(SyncPath p);

// `device`: the backend's kind. NCCL is taken for a CUDA backend with more than one rank when the
// build has it; without it, CUDA ranks stage through host memory like any other device.
SyncPath choose_sync_path(DeviceKind device, bool host_memory, int ranks, bool nccl_built);


class ParamSync {
 public:
  // `host` is the run's communicator; `device` the NCCL one, needed (and only used) on the Nccl
  // path. `counts` are every rank's shard sizes (shard_counts), summing to the model's size.
  ParamSync(SyncPath path, Communicator& host, Communicator* device, Backend& be, std::vector<size_t> counts);
  SyncPath path() const { return path_; }

  // grads: the whole model's gradients in backend memory. On return this rank's shard holds the
  // sum over the ranks; the rest is unspecified.
  void reduce_scatter(float* grads);
  // params: the whole model's parameters in backend memory, this rank's shard up to date. On
  // return every shard is, on every rank.
  void allgather(float* params);

 private:
  SyncPath path_;
  Communicator& host_;
  Communicator* device_;
  Backend& be_;
  std::vector<size_t> counts_;
  size_t begin_ = 0, count_ = 0, total_ = 0;  // this rank's shard, the model's size
  FloatArena staging_;                        // Staged: the host copy the collectives run on
};

}  // namespace gpt::dist
