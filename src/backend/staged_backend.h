// A test backend that behaves like a device: the CPU kernels, but host_memory() is false, so the
// code that drives a GPU (uploading parameters, downloading logits, gradients and optimizer state,
// telling the backend its weights changed) runs and can be checked on any machine against the
// plain CPU backend, which it must match bit for bit. It counts its copies and live bytes.
// `--device cpu-staged` on the command line.
#pragma once
#include <unordered_map>

#include "backend/backend.h"

namespace gpt {

// Every operation forwarded to the CPU backend, on memory that claims to be a device's
// (host_memory() false): the base of the staged backend, and of test backends that override a few
// operations (tests/test_device_train.cpp reads the weights of its products from a copy).
class CpuForwardingBackend : public Backend {
 public:
  Backend& cpu = cpu_backend();

  ActType act_type() const override { return ActType::F32; }
  bool host_memory() const override { return false; }
  void* allocate(size_t bytes) override { return cpu.allocate(bytes); }
  void release(void* p) override { cpu.release(p); }
  void to_device(void* d, const void* s, size_t n) override { cpu.copy(d, s, n); }
  void to_host(void* d, const void* s, size_t n) override { cpu.copy(d, s, n); }
  void act_to_host_f32(float* d, const Act* s, size_t n) override { to_host(d, s, n * sizeof(float)); }
  void fill_zero(void* p, size_t n) override { cpu.fill_zero(p, n); }
  void copy(void* d, const void* s, size_t n) override { cpu.copy(d, s, n); }
  void synchronize() override {}
  void parameters_changed(const float*, size_t) override {}

  std::unique_ptr<PackedWeight> adopt_weight(ops::PackedMatrix&& m) override {
    return cpu.adopt_weight(std::move(m));
  }
  void embedding_forward(Act* o, const TokenId* i, const Weight& a, const float* b, int B, int T,
                         int C) override {
    cpu.embedding_forward(o, i, a, b, B, T, C);
  }
  void embedding_backward(float* a, float* b, const Act* d, const TokenId* i, const TokenId* hi, int B, int T,
                          int C) override {
    cpu.embedding_backward(a, b, d, i, hi, B, T, C);
  }
  void layernorm_forward(Act* o, float* m, float* r, const Act* x, const float* w, const float* b, int N,
                         int C, float eps) override {
    cpu.layernorm_forward(o, m, r, x, w, b, N, C, eps);
  }
  void layernorm_backward(Act* dx, float* dw, float* db, const Act* d, const Act* x, const float* w,
                          const float* m, const float* r, int N, int C) override {
    cpu.layernorm_backward(dx, dw, db, d, x, w, m, r, N, C);
  }
  void residual_layernorm_forward(Act* res, Act* o, float* m, float* r, const Act* a, const Act* b,
                                  ops::Dropout dr, const float* w, const float* bias, int N, int C,
                                  float eps) override {
    cpu.residual_layernorm_forward(res, o, m, r, a, b, dr, w, bias, N, C, eps);
  }
  void linear_forward(Act* o, const Act* x, const Weight& w, const float* b, int N, int I, int O) override {
    cpu.linear_forward(o, x, w, b, N, I, O);
  }
  void linear_gelu_forward(Act* o, Act* pre, const Act* x, const Weight& w, const float* b, int N, int I,
                           int O) override {
    cpu.linear_gelu_forward(o, pre, x, w, b, N, I, O);
  }
  void gelu_forward(Act* o, const Act* x, size_t n) override { cpu.gelu_forward(o, x, n); }
  void lora_forward(Act* o, Act* u, Act* xd, const Act* x, const float* A, const float* B, int N, int I, int r, int O,
                    float s, ops::Dropout d) override {
    cpu.lora_forward(o, u, xd, x, A, B, N, I, r, O, s, d);
  }
  void lora_backward(Act* dx, float* dA, float* dB, Act* du, Act* xd, const Act* d, const Act* x, const Act* u,
                     const float* A, const float* B, int N, int I, int r, int O, float s, ops::Dropout dr) override {
    cpu.lora_backward(dx, dA, dB, du, xd, d, x, u, A, B, N, I, r, O, s, dr);
  }

  void linear_backward(Act* dx, float* dw, float* db, const Act* d, const Act* x, const float* w, int N,
                       int I, int O, bool acc) override {
    cpu.linear_backward(dx, dw, db, d, x, w, N, I, O, acc);
  }
  void gelu_backward(Act* dx, const Act* pre, const Act* d, size_t n) override {
    cpu.gelu_backward(dx, pre, d, n);
  }
  void linear_gelu_backward(Act* dx, float* dw, float* db, Act* dpre, const Act* d2, const float* w2,
                            const Act* x, const Act* pre, const float* w, int N, int I, int O, int O2,
                            bool acc) override {
    cpu.linear_gelu_backward(dx, dw, db, dpre, d2, w2, x, pre, w, N, I, O, O2, acc);
  }
  size_t attention_saved_bytes(int B, int T, int C, int H) const override {
    return cpu_backend().attention_saved_bytes(B, T, C, H);
  }
  size_t attention_scratch_bytes(int B, int T, int C, int H) const override {
    return cpu_backend().attention_scratch_bytes(B, T, C, H);
  }
  void attention_forward(Act* o, void* s, void* sc, const Act* qkv, int B, int T, int C, int H, int band,
                         ops::Dropout d, bool tr) override {
    cpu.attention_forward(o, s, sc, qkv, B, T, C, H, band, d, tr);
  }
  void attention_backward(Act* dq, void* sc, const Act* d, const Act* qkv, const Act* o, const void* s, int B,
                          int T, int C, int H, int band, ops::Dropout dr) override {
    cpu.attention_backward(dq, sc, d, qkv, o, s, B, T, C, H, band, dr);
  }
  KvType kv_cache_type(ops::WeightType w) const override { return cpu_backend().kv_cache_type(w); }
  void kv_cache_write(void* k, void* v, KvType t, const Act* qkv, const CacheIndex& at, int N, int C, int H,
                      int T) override {
    cpu.kv_cache_write(k, v, t, qkv, at, N, C, H, T);
  }
  size_t attention_cached_scratch_bytes(int N, int C, int H, int T) const override {
    return cpu_backend().attention_cached_scratch_bytes(N, C, H, T);
  }
  void attention_cached(Act* o, void* sc, const Act* qkv, const void* k, const void* v, KvType t,
                        const CacheIndex& at, int N, int C, int H, int T, int band,
                        const ops::AttentionCapture* cap) override {
    cpu.attention_cached(o, sc, qkv, k, v, t, at, N, C, H, T, band, cap);
  }
  void embedding_at(Act* o, const TokenId* i, const int32_t* p, const Weight& a, const float* b, int N,
                    int C) override {
    cpu.embedding_at(o, i, p, a, b, N, C);
  }
  void residual_forward(Act* o, const Act* a, const Act* b, size_t n, ops::Dropout d) override {
    cpu.residual_forward(o, a, b, n, d);
  }
  void dropout_forward(Act* x, size_t n, ops::Dropout d) override { cpu.dropout_forward(x, n, d); }
  void dropout_backward(Act* dx, const Act* d, size_t n, ops::Dropout dr) override {
    cpu.dropout_backward(dx, d, n, dr);
  }
  void lm_head_forward(Act* l, const Act* x, const Weight& w, int N, int C, int V) override {
    cpu.lm_head_forward(l, x, w, N, C, V);
  }
  void lm_head_backward(Act* dx, float* dw, const Act* dl, const Act* x, const float* w, int N, int C,
                        int V) override {
    cpu.lm_head_backward(dx, dw, dl, x, w, N, C, V);
  }
  double cross_entropy_forward(float* l, float* lse, const Act* lg, const int32_t* t, int N, int V) override {
    return cpu.cross_entropy_forward(l, lse, lg, t, N, V);
  }
  void cross_entropy_backward(Act* lg, const float* lse, const int32_t* t, int N, int V, float s) override {
    cpu.cross_entropy_backward(lg, lse, t, N, V, s);
  }
  void adamw_update(float* p, const float* g, float* m, float* v, size_t n,
                    const ops::AdamWStep& s) override {
    cpu.adamw_update(p, g, m, v, n, s);
  }
  double sum_squares(const float* x, size_t n) override { return cpu.sum_squares(x, n); }
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
