// The processes of one data-parallel run and the collective operations between them. One
// process (`gpt train`) or N ranks started by an MPI launcher (`mpirun -np N gpt train ...`):
// the trainer calls the same operations either way, and with one rank every one of them is the
// identity. See docs/distributed.md.
//
// Every operation names its data as (pointer, count, type) and nothing else. The MPI communicator
// takes host pointers; the NCCL one (nccl_communicator.h) takes device pointers: its calls run on
// the CUDA backend's stream after the work that wrote the data, and return once the stream is done,
// so a caller may use the result as soon as the call returns.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"

namespace gpt::dist {

enum class DType : uint8_t { F32, F64, I64 };
size_t dtype_size(DType t);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "single process" or the MPI library's name, for logs.
  virtual std::string describe() const = 0;
  // This rank's index among the ranks on its machine (for picking one GPU per rank).
  virtual int local_rank() const { return rank(); }
  // True when the buffers are device memory (NCCL), false when they are host memory (MPI).
  virtual bool device_pointers() const { return false; }

  // buf[0..count) becomes the sum of every rank's buf, on every rank.
  virtual void allreduce_sum(void* buf, size_t count, DType type) = 0;
  // buf holds size() consecutive segments of counts[r] elements. In place: on return, this rank's
  // segment holds the sum over ranks of that segment; the other segments are left unspecified.
  virtual void reduce_scatter_sum(void* buf, std::span<const size_t> counts, DType type) = 0;
  // buf as above. In place: each rank's segment is sent to every rank, so buf is the same everywhere.
  virtual void allgather(void* buf, std::span<const size_t> counts, DType type) = 0;
  // Rank 0 receives every rank's segment (send: counts[rank()] elements) into recv, laid out as
  // above. recv is used on rank 0 only (may be null elsewhere).
  virtual void gather_to_root(const void* send, void* recv, std::span<const size_t> counts, DType type) = 0;
  // buf[0..count) of rank `root` is copied to every rank.
  virtual void broadcast(void* buf, size_t count, DType type, int root = 0) = 0;
  virtual void barrier() = 0;
  // Prints `message` (one line, if not empty) on stderr and ends every rank of the run, exit status 1.
  [[noreturn]] virtual void abort(const std::string& message) = 0;

  void allreduce_sum(float* buf, size_t n) { allreduce_sum(buf, n, DType::F32); }
  void allreduce_sum(double* buf, size_t n) { allreduce_sum(buf, n, DType::F64); }
};

// The run this process belongs to: MPI's world when launched by an MPI launcher (the environment
// has OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK) and gpt was built with MPI; otherwise one process,
// and MPI is never touched. Created on first use; MPI is finalised at exit.
Communicator& world();

// A one-process communicator (the identity), for tests and for runs without a launcher.
Communicator& single_process();

// An error that every rank raises at the same point, from values they all share (a reduced loss,
// a check all ranks agreed on): rank 0 reports it and every rank exits normally; nothing hangs.
struct CollectiveError : Error {
  using Error::Error;
};

}  // namespace gpt::dist
