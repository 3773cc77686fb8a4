// The CPU backend: host memory, fp32 activations, the kernels of ops/cpu. Every operation is the
// ops.h function of the same name; the fused ones run their parts one after the other.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/backend_registry.h"
#include "backend/cpu_backend.h"
#include "backend/staged_backend.h"
#include "core/error.h"
#include "ops/packed.h"

namespace gpt {
namespace {

float* F(Act* p) { return static_cast<float*>(p); }
const float* F(const Act* p) { return static_cast<const float*>(p); }

// A packed matrix in host memory: the CPU multiplies by it where it is.
class HostPackedWeight final : public PackedWeight {
 public:
  explicit HostPackedWeight(ops::PackedMatrix&& m) : m_(std::move(m)) {}
  ops::WeightType type() const override { return m_.type(); }
  int in() const override { return m_.in(); }
  int out() const override { return m_.out(); }
  size_t bytes() const override { return m_.bytes(); }
  const ops::PackedMatrix* host() const override { return &m_; }

 private:
  ops::PackedMatrix m_;
};

const ops::PackedMatrix& host_matrix(const Weight& w) {
  const ops::PackedMatrix* m = w.packed->host();
  if (!m) fail("internal error: a packed weight of another backend reached the CPU");
  return *m;
}

}  // namespace

DeviceKind CpuBackend::kind() const { return DeviceKind::Cpu; }

ActType CpuBackend::act_type() const { return ActType::F32; }

bool CpuBackend::host_memory() const { return true; }

void* CpuBackend::allocate(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (!p) fail("out of memory: cannot allocate {} bytes", bytes);
  std::memset(p, 0, rounded);
  return p;
}

void CpuBackend::release(void* p) { std::free(p); }

void CpuBackend::to_device(void* dst, const void* src, size_t bytes) { copy(dst, src, bytes); }

void CpuBackend::to_host(void* dst, const void* src, size_t bytes) { copy(dst, src, bytes); }

void CpuBackend::act_to_host_f32(float* dst, const Act* src, size_t n) { copy(dst, src, n * sizeof(float)); }

void CpuBackend::fill_zero(void* p, size_t bytes) {
  if (bytes) std::memset(p, 0, bytes);
}

void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}

void CpuBackend::synchronize() {}

void CpuBackend::parameters_changed(const float*, size_t) {}  // the kernels read the fp32 weights

std::unique_ptr<PackedWeight> CpuBackend::adopt_weight(ops::PackedMatrix&& m) {
  return std::make_unique<HostPackedWeight>(std::move(m));
}

void CpuBackend::embedding_forward(Act* out, const TokenId* ids, const Weight& wte, const float* wpe, int B,
                                   int T, int C) {
  if (!wte.packed) {
    ops::embedding_forward(F(out), ids, wte.f32, wpe, B, T, C);
    return;
  }
  const ops::PackedMatrix& m = host_matrix(wte);
#pragma omp parallel for schedule(static)
  for (long n = 0; n < static_cast<long>(B) * T; n++) {
    float* o = F(out) + static_cast<size_t>(n) * C;
    m.dequantize_row(static_cast<int>(ids[n]), o);
    const float* pe = wpe + static_cast<size_t>(n % T) * C;
    for (int c = 0; c < C; c++) o[c] += pe[c];
  }
}

void CpuBackend::embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids,
                                    const TokenId*, int B, int T, int C) {
  ops::embedding_backward(dwte, dwpe, F(dout), ids, B, T, C);
}

void CpuBackend::layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* w,
                                   const float* b, int N, int C, float eps) {
  ops::layernorm_forward(F(out), mean, rstd, F(inp), w, b, N, C, eps);
}

void CpuBackend::layernorm_backward(Act* dinp, float* dw, float* db, const Act* dout, const Act* inp,
                                    const float* w, const float* mean, const float* rstd, int N, int C) {
  ops::layernorm_backward(F(dinp), dw, db, F(dout), F(inp), w, mean, rstd, N, C);
}

void CpuBackend::residual_layernorm_forward(Act* res, Act* out, float* mean, float* rstd, const Act* a,
                                            const Act* b, ops::Dropout drop, const float* w,
                                            const float* bias, int N, int C, float eps) {
  ops::residual_forward(F(res), F(a), F(b), static_cast<size_t>(N) * C, drop);
  ops::layernorm_forward(F(out), mean, rstd, F(res), w, bias, N, C, eps);
}

void CpuBackend::linear_forward(Act* out, const Act* inp, const Weight& w, const float* bias, int N, int IC,
                                int OC) {
  if (w.packed)
    ops::packed_linear(F(out), F(inp), host_matrix(w), bias, N);
  else
    ops::linear_forward(F(out), F(inp), w.f32, bias, N, IC, OC);
}

void CpuBackend::linear_gelu_forward(Act* out, Act* pre, const Act* inp, const Weight& w, const float* bias,
                                     int N, int IC, int OC) {
  linear_forward(pre, inp, w, bias, N, IC, OC);
  ops::gelu_forward(F(out), F(pre), static_cast<size_t>(N) * OC);
}

void CpuBackend::gelu_forward(Act* out, const Act* inp, size_t n) { ops::gelu_forward(F(out), F(inp), n); }

void CpuBackend::lora_forward(Act* out, Act* u, Act* xd, const Act* x, const float* A, const float* B, int N,
                              int IN, int r, int OUT, float scale, ops::Dropout drop) {
  ops::lora_forward(F(out), F(u), F(xd), F(x), A, B, N, IN, r, OUT, scale, drop);
}

void CpuBackend::lora_backward(Act* dinp, float* dA, float* dB, Act* du, Act* xd, const Act* dout,
                               const Act* x, const Act* u, const float* A, const float* B, int N, int IN,
                               int r, int OUT, float scale, ops::Dropout drop) {
  ops::lora_backward(F(dinp), dA, dB, F(du), F(xd), F(dout), F(x), F(u), A, B, N, IN, r, OUT, scale, drop);
}

void CpuBackend::linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp,
                                 const float* w, int N, int IC, int OC, bool accumulate) {
  ops::linear_backward(F(dinp), dw, dbias, F(dout), F(inp), w, N, IC, OC, accumulate);
}

void CpuBackend::gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) {
  ops::gelu_backward(F(dinp), F(pre), F(dout), n);
}

void CpuBackend::linear_gelu_backward(Act* dinp, float* dw, float* dbias, Act* dpre, const Act* dout2,
                                      const float* w2, const Act* inp, const Act* pre, const float* w, int N,
                                      int IC, int OC, int OC2, bool accumulate) {
  ops::linear_backward(F(dpre), nullptr, nullptr, F(dout2), nullptr, w2, N, OC, OC2, false);
  ops::gelu_backward(F(dpre), F(pre), F(dpre), static_cast<size_t>(N) * OC);
  ops::linear_backward(F(dinp), dw, dbias, F(dpre), F(inp), w, N, IC, OC, accumulate);
}

size_t CpuBackend::attention_saved_bytes(int B, int T, int, int H) const {
  return static_cast<size_t>(B) * H * T * T * sizeof(float);
}

size_t CpuBackend::attention_scratch_bytes(int, int T, int, int) const {
  return ops::attention_scratch_floats(T) * sizeof(float);
}

void CpuBackend::attention_forward(Act* out, void* saved, void* scratch, const Act* qkv, int B, int T, int C,
                                   int H, int band, ops::Dropout drop, bool training) {
  ops::attention_forward(F(out), training ? static_cast<float*>(saved) : nullptr,
                         static_cast<float*>(scratch), F(qkv), B, T, C, H, band, drop);
}

void CpuBackend::attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv, const Act*,
                                    const void* saved, int B, int T, int C, int H, int band,
                                    ops::Dropout drop) {
  ops::attention_backward(F(dqkv), static_cast<float*>(scratch), F(dout), F(qkv),
                          static_cast<const float*>(saved), B, T, C, H, band, drop);
}

KvType CpuBackend::kv_cache_type(ops::WeightType weights) const {
  return weights == ops::WeightType::F32 ? KvType::F32 : KvType::F16;
}

ops::KvCacheView CpuBackend::view(const void* k, const void* v, KvType type, int n_ctx) {
  if (type == KvType::BF16) fail("internal error: the CPU keeps no bf16 key/value caches");
  return {const_cast<void*>(k), const_cast<void*>(v), n_ctx, type == KvType::F16};
}

void CpuBackend::kv_cache_write(void* k, void* v, KvType type, const Act* qkv, const CacheIndex& at, int N,
                                int C, int H, int n_ctx) {
  ops::kv_cache_write(view(k, v, type, n_ctx), F(qkv), at.rows, at.pos, N, C, H);
}

size_t CpuBackend::attention_cached_scratch_bytes(int, int C, int H, int n_ctx) const {
  return ops::attention_cached_scratch_floats(n_ctx, C / H) * sizeof(float);
}

void CpuBackend::attention_cached(Act* out, void* scratch, const Act* qkv, const void* k, const void* v,
                                  KvType type, const CacheIndex& at, int N, int C, int H, int n_ctx, int band,
                                  const ops::AttentionCapture* capture) {
  ops::attention_cached(F(out), static_cast<float*>(scratch), F(qkv), view(k, v, type, n_ctx), at.rows,
                        at.pos, N, C, H, band, capture);
}

void CpuBackend::embedding_at(Act* out, const TokenId* ids, const int32_t* pos, const Weight& wte,
                              const float* wpe, int N, int C) {
  for (int i = 0; i < N; i++) {
    float* o = F(out) + static_cast<size_t>(i) * C;
    if (wte.packed)
      host_matrix(wte).dequantize_row(static_cast<int>(ids[i]), o);
    else
      std::memcpy(o, wte.f32 + static_cast<size_t>(ids[i]) * C, C * sizeof(float));
    const float* p = wpe + static_cast<size_t>(pos[i]) * C;
    for (int c = 0; c < C; c++) o[c] += p[c];
  }
}

void CpuBackend::residual_forward(Act* out, const Act* a, const Act* b, size_t n, ops::Dropout drop) {
  ops::residual_forward(F(out), F(a), F(b), n, drop);
}

void CpuBackend::dropout_forward(Act* x, size_t n, ops::Dropout drop) { ops::dropout_forward(F(x), n, drop); }

void CpuBackend::dropout_backward(Act* dinp, const Act* dout, size_t n, ops::Dropout drop) {
  ops::dropout_backward(F(dinp), F(dout), n, drop);
}

void CpuBackend::lm_head_forward(Act* logits, const Act* x, const Weight& wte, int N, int C, int V) {
  if (wte.packed)
    ops::packed_linear(F(logits), F(x), host_matrix(wte), nullptr, N);
  else
    ops::lm_head_forward(F(logits), F(x), wte.f32, N, C, V);
}

void CpuBackend::lm_head_backward(Act* dx, float* dwte, const Act* dlogits, const Act* x, const float* wte,
                                  int N, int C, int V) {
  ops::lm_head_backward(F(dx), dwte, F(dlogits), F(x), wte, N, C, V);
}

double CpuBackend::cross_entropy_forward(float* losses, float* lse, const Act* logits, const int32_t* targets,
                                         int N, int V) {
  return ops::cross_entropy_forward(losses, lse, F(logits), targets, N, V);
}

void CpuBackend::cross_entropy_backward(Act* logits, const float* lse, const int32_t* targets, int N, int V,
                                        float scale) {
  ops::cross_entropy_backward(F(logits), lse, targets, N, V, scale);
}

void CpuBackend::adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                              const ops::AdamWStep& s) {
  ops::adamw_update(param, grad, m, v, n, s);
}

double CpuBackend::sum_squares(const float* x, size_t n) { return ops::sum_squares(x, n); }

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

bool cuda_backend_built() { return cuda_compiled_in(); }

StagedCpuBackend& staged_cpu_backend() {
  static StagedCpuBackend backend;
  return backend;
}

const char* device_name(DeviceKind k) {
  switch (k) {
    case DeviceKind::Cpu:
      return "cpu";
    case DeviceKind::CpuStaged:
      return "cpu-staged";
    case DeviceKind::Cuda:
      return "cuda";
    case DeviceKind::CudaFp32:
      return "cuda-fp32";
  }
  return "?";
}

DeviceKind parse_device(std::string_view name) {
  for (DeviceKind k : {DeviceKind::Cpu, DeviceKind::CpuStaged, DeviceKind::Cuda, DeviceKind::CudaFp32})
    if (name == device_name(k)) return k;
  fail("unknown device \"{}\" (expected cpu, cuda, cuda-fp32, or cpu-staged for tests)", name);
}

bool is_cuda(DeviceKind k) { return k == DeviceKind::Cuda || k == DeviceKind::CudaFp32; }

void Backend::lora_forward(Act*, Act*, Act*, const Act*, const float*, const float*, int, int, int, int,
                           float, ops::Dropout) {
  fail(
      "LoRA adapters run on the cpu backends only, not yet on {} (merge them into the weights: gpt lora "
      "merge)",
      name());
}
void Backend::lora_backward(Act*, float*, float*, Act*, Act*, const Act*, const Act*, const Act*,
                            const float*, const float*, int, int, int, int, float, ops::Dropout) {
  fail("LoRA adapters run on the cpu backends only, not yet on {}", name());
}

std::unique_ptr<PackedWeight> Backend::adopt_weight(ops::PackedMatrix&& m) {
  fail("{} weights run on the cpu backend only, not on {} (load the model with f32 weights there)",
       ops::weight_type_name(m.type()), name());
}

Backend& backend_for(DeviceKind kind, int local_rank) {
  switch (kind) {
    case DeviceKind::Cpu:
      return cpu_backend();
    case DeviceKind::CpuStaged:
      return staged_cpu_backend();
    case DeviceKind::Cuda: {
      static std::unique_ptr<Backend> cuda =
          make_cuda_backend(ActType::BF16, local_rank);  // a failed make retries
      return *cuda;
    }
    case DeviceKind::CudaFp32: {
      static std::unique_ptr<Backend> cuda = make_cuda_backend(ActType::F32, local_rank);
      return *cuda;
    }
  }
  fail("unknown device kind");
}

Backend& backend_for(std::string_view device) { return backend_for(parse_device(device)); }

}  // namespace gpt
