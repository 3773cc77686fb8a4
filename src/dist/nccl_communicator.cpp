// dist::Communicator over NCCL (see nccl_communicator.h). Compiled only with CUDA, NCCL and MPI.
// libnccl is linked, not opened at run time: linked, it costs `gpt --version` nothing measurable
// (docs/distributed.md), unlike cuBLASLt.
#include "dist/nccl_communicator.h"

#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"

namespace gpt::dist {
namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail("NCCL: {} failed: {}", what, ncclGetErrorString(r));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::I64:
      return ncclInt64;
  }
  return ncclFloat32;
}

// ncclUniqueId travels through the host communicator as 64-bit words.
constexpr size_t kIdWords = (sizeof(ncclUniqueId) + 7) / 8;

class Nccl final : public Communicator {
 public:
  Nccl(Communicator& host, Backend& be) : host_(host), be_(be) {
    // The backend chose the GPU (one per local rank) and runs on a stream: NCCL queues its
    // collectives on that stream too, after the work that wrote their data.
    if (!is_cuda(be.kind()) || !be.native_stream())
      fail("NCCL: the tensors must live on a CUDA backend, not {}", be.name());
    device_ = be.device_index();
    stream_ = static_cast<cudaStream_t>(be.native_stream());
    // Rank 0 makes the id; every rank learns whether that worked before waiting for it.
    int64_t words[kIdWords] = {};
    double failed = 0.0;
    std::string why;
    if (host_.rank() == 0) {
      ncclUniqueId id;
      const ncclResult_t r = ncclGetUniqueId(&id);
      if (r != ncclSuccess) {
        failed = 1.0;
        why = ncclGetErrorString(r);
      } else {
        std::memcpy(words, &id, sizeof(id));
      }
    }
    host_.allreduce_sum(&failed, 1);
    // Every rank knows: rank 0 alone reports it, and no rank waits for an id that will not come.
    if (failed != 0.0)
      throw CollectiveError(
          fmt::format("NCCL: ncclGetUniqueId failed on rank 0{}", why.empty() ? "" : ": " + why));
    host_.broadcast(words, kIdWords, DType::I64, 0);
    ncclUniqueId id;
    std::memcpy(&id, words, sizeof(id));
    check(ncclCommInitRank(&comm_, host_.size(), id, host_.rank()), "ncclCommInitRank");
  }
  ~Nccl() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  Nccl(const Nccl&) = delete;
  Nccl& operator=(const Nccl&) = delete;

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  int local_rank() const override { return host_.local_rank(); }
  bool device_pointers() const override { return true; }
  std::string describe() const override {
    int v = 0;
    ncclGetVersion(&v);
    // NCCL_VERSION_CODE is major * 10000 + minor * 100 + patch since 2.9.
    return fmt::format("NCCL {}.{}.{} on GPU {} ({})", v / 10000, v / 100 % 100, v % 100, device_,
                       host_.describe());
  }

  void allreduce_sum(void* buf, size_t count, DType type) override {
    if (size() == 1 || count == 0) return;
    check(ncclAllReduce(buf, buf, count, nccl_type(type), ncclSum, comm_, stream_), "ncclAllReduce");
    wait();
  }

  void reduce_scatter_sum(void* buf, std::span<const size_t> counts, DType type) override {
    if (size() == 1) return;
    const auto offs = offsets(counts);
    char* b = static_cast<char*>(buf);
    const size_t es = dtype_size(type);
    if (equal(counts)) {
      // In place: NCCL leaves this rank's sum at buf + rank * count, its segment.
      const size_t n = counts[0];
      check(ncclReduceScatter(b, b + rank() * n * es, n, nccl_type(type), ncclSum, comm_, stream_),
            "ncclReduceScatter");
    } else {
      // One reduction per segment, to the rank that owns it (in place on the root).
      check(ncclGroupStart(), "ncclGroupStart");
      for (int r = 0; r < size(); r++) {
        char* seg = b + offs[r] * es;
        check(ncclReduce(seg, seg, counts[r], nccl_type(type), ncclSum, r, comm_, stream_), "ncclReduce");
      }
      check(ncclGroupEnd(), "ncclGroupEnd");
    }
    wait();
  }

  void allgather(void* buf, std::span<const size_t> counts, DType type) override {
    if (size() == 1) return;
    const auto offs = offsets(counts);
    char* b = static_cast<char*>(buf);
    const size_t es = dtype_size(type);
    if (equal(counts)) {
      const size_t n = counts[0];
      check(ncclAllGather(b + rank() * n * es, b, n, nccl_type(type), comm_, stream_), "ncclAllGather");
    } else {
      // Each segment broadcast from its owner, in place.
      check(ncclGroupStart(), "ncclGroupStart");
      for (int r = 0; r < size(); r++) {
        char* seg = b + offs[r] * es;
        check(ncclBroadcast(seg, seg, counts[r], nccl_type(type), r, comm_, stream_), "ncclBroadcast");
      }
      check(ncclGroupEnd(), "ncclGroupEnd");
    }
    wait();
  }

  void gather_to_root(const void* send, void* recv, std::span<const size_t> counts, DType type) override {
    const auto offs = offsets(counts);
    const size_t es = dtype_size(type);
    if (rank() == 0) {
      char* out = static_cast<char*>(recv);
      if (counts[0] && out != send) be_.copy(out, send, counts[0] * es);
      check(ncclGroupStart(), "ncclGroupStart");
      for (int r = 1; r < size(); r++)
        if (counts[r])
          check(ncclRecv(out + offs[r] * es, counts[r], nccl_type(type), r, comm_, stream_), "ncclRecv");
      check(ncclGroupEnd(), "ncclGroupEnd");
    } else if (counts[rank()]) {
      check(ncclSend(send, counts[rank()], nccl_type(type), 0, comm_, stream_), "ncclSend");
    }
    wait();
  }

  void broadcast(void* buf, size_t count, DType type, int root) override {
    if (size() == 1 || count == 0) return;
    check(ncclBroadcast(buf, buf, count, nccl_type(type), root, comm_, stream_), "ncclBroadcast");
    wait();
  }

  void barrier() override { host_.barrier(); }

  [[noreturn]] void abort(const std::string& message) override {
    // The peers may be inside a collective that will never complete: tear NCCL down first.
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    host_.abort(message);
    std::_Exit(1);  // not reached: the host communicator's abort ends the process
  }

 private:
  std::vector<size_t> offsets(std::span<const size_t> counts) const {
    if (counts.size() != static_cast<size_t>(size()))
      fail("a collective got {} counts for {} ranks", counts.size(), size());
    std::vector<size_t> o(counts.size(), 0);
    std::exclusive_scan(counts.begin(), counts.end(), o.begin(), size_t{0});
    return o;
  }
  static bool equal(std::span<const size_t> counts) {
    for (size_t c : counts)
      if (c != counts[0]) return false;
    return true;
  }
  void wait() { be_.synchronize(); }

  Communicator& host_;
  Backend& be_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool nccl_compiled_in() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, Backend& be) {
  return std::make_unique<Nccl>(host, be);
}

}  // namespace gpt::dist
