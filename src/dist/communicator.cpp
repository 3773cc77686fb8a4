#include "dist/communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "dist/mpi_communicator.h"

namespace gpt::dist {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::I64:
      return 8;
  }
  return 0;
}

namespace {

// One rank: every collective leaves the data as it is.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single process"; }
  void allreduce_sum(void*, size_t, DType) override {}
  void reduce_scatter_sum(void*, std::span<const size_t>, DType) override {}
  void allgather(void*, std::span<const size_t>, DType) override {}
  void gather_to_root(const void* send, void* recv, std::span<const size_t> counts, DType type) override {
    if (send != recv && !counts.empty()) std::memmove(recv, send, counts[0] * dtype_size(type));
  }
  void broadcast(void*, size_t, DType, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message) override {
    if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::exit(1);
  }
};

// The rank count an MPI launcher announced in the environment: 0 when not launched by one, -1 when
// launched but the count is not in the environment (PMIx).
int launcher_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return std::getenv("PMIX_RANK") ? -1 : 0;
}

std::unique_ptr<Communicator> make_world() {
  const int launched = launcher_size();
  if (launched == 0) return std::make_unique<SingleProcess>();
#if GPT_HAVE_MPI
  return make_mpi_communicator();
#else
  // N copies of a one-process run would all write the same OUT: refuse.
  if (launched != 1)
    fail(
        "started by an MPI launcher, but this gpt was built without MPI (install libopenmpi-dev, then "
        "reconfigure and rebuild)");
  return std::make_unique<SingleProcess>();
#endif
}

}  // namespace

Communicator& world() {
  static const std::unique_ptr<Communicator> w = make_world();
  return *w;
}

Communicator& single_process() {
  static SingleProcess s;
  return s;
}

}  // namespace gpt::dist
