// A test backend that behaves like a device: the CPU kernels, but host_memory() is false, so the
// code that drives a GPU (uploading parameters, downloading logits, gradients and optimizer state,
// telling the backend its weights changed) runs and can be checked on any machine against the
// plain CPU backend, which it must match bit for bit. It counts its copies and live bytes.
// `--device cpu-staged` on the command line.
#pragma once
#include <unordered_map>

#include "backend/cpu_backend.h"

namespace gpt {

// The CPU backend on memory that claims to be a device's (host_memory() false): the base of the
// staged backend, and of test backends that override a few operations
// (tests/test_device_train.cpp reads the weights of its products from a copy). Every operation is
// the CPU backend's own; `cpu` is the plain CPU backend, for overrides that call it.
class CpuForwardingBackend : public CpuBackend {
 public:
  Backend& cpu = cpu_backend();

  bool host_memory() const override { return false; }
  // A download, as on a device (counted by the staged backend).
  void act_to_host_f32(float* d, const Act* s, size_t n) override { to_host(d, s, n * sizeof(float)); }
};

class StagedCpuBackend final : public CpuForwardingBackend {
 public:
  int uploads = 0, downloads = 0, param_changes = 0;
  int host_id_calls = 0;  // embedding backwards given the ids in host memory too
  size_t live_bytes = 0;

  DeviceKind kind() const override { return DeviceKind::CpuStaged; }
  void* allocate(size_t bytes) override {
    void* p = cpu.allocate(bytes);
    live_bytes += bytes;
    sizes_[p] = bytes;
    return p;
  }
  void release(void* p) override {
    if (auto it = sizes_.find(p); it != sizes_.end()) {
      live_bytes -= it->second;
      sizes_.erase(it);
    }
    cpu.release(p);
  }
  void to_device(void* d, const void* s, size_t n) override {
    uploads++;
    cpu.copy(d, s, n);
  }
  void to_host(void* d, const void* s, size_t n) override {
    downloads++;
    cpu.copy(d, s, n);
  }
  void parameters_changed(const float*, size_t) override { param_changes++; }

  void embedding_backward(float* a, float* b, const Act* d, const TokenId* i, const TokenId* hi, int B, int T,
                          int C) override {
    if (hi) host_id_calls++;
    cpu.embedding_backward(a, b, d, i, hi, B, T, C);
  }

 private:
  std::unordered_map<void*, size_t> sizes_;
};

// The process-wide instance backend_for("cpu-staged") returns.
StagedCpuBackend& staged_cpu_backend();

}  // namespace gpt
