// dist::Communicator over MPI_COMM_WORLD. Compiled only when CMake finds MPI.
#include "dist/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace gpt::dist {
namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I64:
      return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

// MPI counts and displacements are ints.
int as_count(size_t n) {
  if (n > static_cast<size_t>(INT_MAX))
    fail("{} elements in one MPI message: more than MPI's int counts hold", n);
  return static_cast<int>(n);
}

void finalize_at_exit() {
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
}

class Mpi final : public Communicator {
 public:
  Mpi() {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
      // Funneled: only the main thread calls MPI; the OpenMP workers never do.
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      std::atexit(finalize_at_exit);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // The ranks that share this machine's memory: this rank's place among them.
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string describe() const override {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    std::string s(v, static_cast<size_t>(len));
    s = s.substr(0, s.find_first_of(",\n"));  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
    return "MPI, " + s;
  }

  void allreduce_sum(void* buf, size_t count, DType type) override {
    if (size_ == 1 || count == 0) return;
    MPI_Allreduce(MPI_IN_PLACE, buf, as_count(count), mpi_type(type), MPI_SUM, MPI_COMM_WORLD);
  }

  void reduce_scatter_sum(void* buf, std::span<const size_t> counts, DType type) override {
    if (size_ == 1) return;
    layout(counts);
    // In place, MPI leaves this rank's sum at the start of buf: move it to the rank's segment.
    MPI_Reduce_scatter(MPI_IN_PLACE, buf, counts_.data(), mpi_type(type), MPI_SUM, MPI_COMM_WORLD);
    const size_t es = dtype_size(type);
    char* b = static_cast<char*>(buf);
    std::memmove(b + static_cast<size_t>(displs_[rank_]) * es, b, counts[rank_] * es);
  }

  void allgather(void* buf, std::span<const size_t> counts, DType type) override {
    if (size_ == 1) return;
    layout(counts);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts_.data(), displs_.data(), mpi_type(type),
                   MPI_COMM_WORLD);
  }

  void gather_to_root(const void* send, void* recv, std::span<const size_t> counts, DType type) override {
    layout(counts);
    if (size_ == 1) {
      if (send != recv) std::memmove(recv, send, counts[0] * dtype_size(type));
      return;
    }
    MPI_Gatherv(send, counts_[rank_], mpi_type(type), recv, counts_.data(), displs_.data(), mpi_type(type), 0,
                MPI_COMM_WORLD);
  }

  void broadcast(void* buf, size_t count, DType type, int root) override {
    if (size_ == 1 || count == 0) return;
    MPI_Bcast(buf, as_count(count), mpi_type(type), root, MPI_COMM_WORLD);
  }

  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }

  [[noreturn]] void abort(const std::string& message) override {
    if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);  // not reached: MPI_Abort ends the process
  }

 private:
  // counts_ and displs_ as MPI wants them, for size_ consecutive segments.
  void layout(std::span<const size_t> counts) {
    if (counts.size() != static_cast<size_t>(size_))
      fail("a collective got {} counts for {} ranks", counts.size(), size_);
    counts_.resize(counts.size());
    displs_.resize(counts.size());
    size_t at = 0;
    for (size_t r = 0; r < counts.size(); r++) {
      counts_[r] = as_count(counts[r]);
      displs_[r] = as_count(at);
      at += counts[r];
    }
    as_count(at);  // implementations sum the counts in an int
  }

  int rank_ = 0, size_ = 1, local_rank_ = 0;
  std::vector<int> counts_, displs_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<Mpi>(); }

}  // namespace gpt::dist
