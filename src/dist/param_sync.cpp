#include "dist/param_sync.h"

#include <numeric>
#include <utility>

#include "core/error.h"

namespace gpt::dist {

std::string_view sync_path_name(SyncPath p) {
  switch (p) {
    case SyncPath::Local:
      return "local";
    case SyncPath::Direct:
      return "direct";
    case SyncPath::Staged:
      return "staged through host memory";
    case SyncPath::Nccl:
      return "NCCL";
  }
  return "?";
}

SyncPath choose_sync_path(DeviceKind device, bool host_memory, int ranks, bool nccl_built) {
  if (ranks <= 1) return SyncPath::Local;
  if (host_memory) return SyncPath::Direct;
  if (is_cuda(device) && nccl_built) return SyncPath::Nccl;
  return SyncPath::Staged;
}

ParamSync::ParamSync(SyncPath path, Communicator& host, Communicator* device, Backend& be,
                     std::vector<size_t> counts)
    : path_(path), host_(host), device_(device), be_(be), counts_(std::move(counts)) {
  const size_t r = static_cast<size_t>(host.rank());
  if (counts_.size() != static_cast<size_t>(host.size()) || r >= counts_.size())
    fail("ParamSync: {} shard counts for {} ranks", counts_.size(), host.size());
  begin_ = std::accumulate(counts_.begin(), counts_.begin() + static_cast<std::ptrdiff_t>(r), size_t{0});
  count_ = counts_[r];
  total_ = std::accumulate(counts_.begin(), counts_.end(), size_t{0});
  if (path_ == SyncPath::Nccl && (!device_ || !device_->device_pointers()))
    fail("ParamSync: the NCCL path needs a communicator that takes device pointers");
  if (path_ == SyncPath::Direct && !be_.host_memory())
    fail("ParamSync: backend {} keeps its tensors in device memory: they must be staged", be_.name());
  if (path_ == SyncPath::Staged) staging_.resize(total_);
}

void ParamSync::reduce_scatter(float* grads) {
  switch (path_) {
    case SyncPath::Local:
      return;
    case SyncPath::Direct:
      host_.reduce_scatter_sum(grads, counts_, DType::F32);
      return;
    case SyncPath::Staged:
      // Every rank's gradients of every shard go into the sum: the whole array comes down, only
      // this rank's summed shard goes back up.
      be_.to_host(staging_.data(), grads, total_ * sizeof(float));
      host_.reduce_scatter_sum(staging_.data(), counts_, DType::F32);
      if (count_) be_.to_device(grads + begin_, staging_.data() + begin_, count_ * sizeof(float));
      return;
    case SyncPath::Nccl:
      be_.synchronize();  // the backward has written the gradients
      device_->reduce_scatter_sum(grads, counts_, DType::F32);
      return;
  }
}

void ParamSync::allgather(float* params) {
  switch (path_) {
    case SyncPath::Local:
      return;
    case SyncPath::Direct:
      host_.allgather(params, counts_, DType::F32);
      return;
    case SyncPath::Staged:
      if (count_) be_.to_host(staging_.data() + begin_, params + begin_, count_ * sizeof(float));
      host_.allgather(staging_.data(), counts_, DType::F32);
      be_.to_device(params, staging_.data(), total_ * sizeof(float));
      return;
    case SyncPath::Nccl:
      be_.synchronize();  // the optimizer has written this rank's shard
      device_->allgather(params, counts_, DType::F32);
      return;
  }
}

}  // namespace gpt::dist
