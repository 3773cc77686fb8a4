// The CPU backend: host memory, fp32 activations, the kernels of ops/cpu. Every operation is the
// ops.h function of the same name; the fused ones run their parts one after the other.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/backend.h"
#include "backend/backend_registry.h"
#include "backend/staged_backend.h"
#include "core/error.h"

namespace gpt {
namespace {

float* F(Act* p) { return static_cast<float*>(p); }
const float* F(const Act* p) { return static_cast<const float*>(p); }

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  ActType act_type() const override { return ActType::F32; }
  bool host_memory() const override { return true; }

  void* allocate(size_t bytes) override {
    const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded);
    if (!p) fail("out of memory: cannot allocate {} bytes", bytes);
    std::memset(p, 0, rounded);
    return p;
  }
  void release(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void act_to_host_f32(float* dst, const Act* src, size_t n) override { copy(dst, src, n * sizeof(float)); }
  void fill_zero(void* p, size_t bytes) override {
    if (bytes) std::memset(p, 0, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes && dst != src) std::memmove(dst, src, bytes);
  }
  void synchronize() override {}
  void parameters_changed(const float*, size_t) override {}  // the kernels read the fp32 weights

  void embedding_forward(Act* out, const TokenId* ids, const float* wte, const float* wpe, int B, int T,
                         int C) override {
    ops::embedding_forward(F(out), ids, wte, wpe, B, T, C);
  }
  void embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids, const TokenId*,
                          int B, int T, int C) override {
    ops::embedding_backward(dwte, dwpe, F(dout), ids, B, T, C);
  }

  void layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* w, const float* b,
                         int N, int C, float eps) override {
    ops::layernorm_forward(F(out), mean, rstd, F(inp), w, b, N, C, eps);
  }
  void layernorm_backward(Act* dinp, float* dw, float* db, const Act* dout, const Act* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override {
    ops::layernorm_backward(F(dinp), dw, db, F(dout), F(inp), w, mean, rstd, N, C);
  }
  void residual_layernorm_forward(Act* res, Act* out, float* mean, float* rstd, const Act* a, const Act* b,
                                  ops::Dropout drop, const float* w, const float* bias, int N, int C,
                                  float eps) override {
    ops::residual_forward(F(res), F(a), F(b), static_cast<size_t>(N) * C, drop);
    ops::layernorm_forward(F(out), mean, rstd, F(res), w, bias, N, C, eps);
  }

  void linear_forward(Act* out, const Act* inp, const float* w, const float* bias, int N, int IC,
                      int OC) override {
    ops::linear_forward(F(out), F(inp), w, bias, N, IC, OC);
  }
  void linear_gelu_forward(Act* out, Act* pre, const Act* inp, const float* w, const float* bias, int N,
                           int IC, int OC) override {
    ops::linear_forward(F(pre), F(inp), w, bias, N, IC, OC);
    ops::gelu_forward(F(out), F(pre), static_cast<size_t>(N) * OC);
  }
  void linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp, const float* w,
                       int N, int IC, int OC, bool accumulate) override {
    ops::linear_backward(F(dinp), dw, dbias, F(dout), F(inp), w, N, IC, OC, accumulate);
  }
  void gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) override {
    ops::gelu_backward(F(dinp), F(pre), F(dout), n);
  }
  void linear_gelu_backward(Act* dinp, float* dw, float* dbias, Act* dpre, const Act* dout2, const float* w2,
                            const Act* inp, const Act* pre, const float* w, int N, int IC, int OC, int OC2,
                            bool accumulate) override {
    ops::linear_backward(F(dpre), nullptr, nullptr, F(dout2), nullptr, w2, N, OC, OC2, false);
    ops::gelu_backward(F(dpre), F(pre), F(dpre), static_cast<size_t>(N) * OC);
    ops::linear_backward(F(dinp), dw, dbias, F(dpre), F(inp), w, N, IC, OC, accumulate);
  }

  // The CPU kernels keep the softmax probabilities [B,H,T,T] for the backward.
  size_t attention_saved_bytes(int B, int T, int, int H) const override {
    return static_cast<size_t>(B) * H * T * T * sizeof(float);
  }
  size_t attention_scratch_bytes(int, int T, int, int) const override {
    return ops::attention_scratch_floats(T) * sizeof(float);
  }
  void attention_forward(Act* out, void* saved, void* scratch, const Act* qkv, int B, int T, int C, int H,
                         int band, ops::Dropout drop, bool training) override {
    ops::attention_forward(F(out), training ? static_cast<float*>(saved) : nullptr,
                           static_cast<float*>(scratch), F(qkv), B, T, C, H, band, drop);
  }
  void attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv, const Act*,
                          const void* saved, int B, int T, int C, int H, int band,
                          ops::Dropout drop) override {
    ops::attention_backward(F(dqkv), static_cast<float*>(scratch), F(dout), F(qkv),
                            static_cast<const float*>(saved), B, T, C, H, band, drop);
  }

  // Decoding: plain loops (the packed-weight Decoder is the CPU's fast path).
  void embedding_at(Act* out, const TokenId* ids, const int32_t* pos, const float* wte, const float* wpe,
                    int N, int C) override {
    for (int i = 0; i < N; i++) {
      const float* e = wte + static_cast<size_t>(ids[i]) * C;
      const float* p = wpe + static_cast<size_t>(pos[i]) * C;
      float* o = F(out) + static_cast<size_t>(i) * C;
      for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
  }
  void kv_cache_write(Act* k_cache, Act* v_cache, const Act* qkv, const int32_t* rows, const int32_t* pos,
                      int N, int C, int H, int n_ctx) override {
    const size_t hs = C / H;
    for (int i = 0; i < N; i++)
      for (int h = 0; h < H; h++) {
        const float* src = F(qkv) + static_cast<size_t>(i) * 3 * C + h * hs;
        const size_t at = ((static_cast<size_t>(rows[i]) * H + h) * n_ctx + pos[i]) * hs;
        std::memcpy(F(k_cache) + at, src + C, hs * sizeof(float));
        std::memcpy(F(v_cache) + at, src + 2 * C, hs * sizeof(float));
      }
  }
  // One row of n_ctx scores per (query, head).
  size_t attention_decode_scratch_bytes(int N, int, int H, int n_ctx) const override {
    return static_cast<size_t>(N) * H * n_ctx * sizeof(float);
  }
  void attention_decode(Act* out, void* scratch, const Act* qkv, const Act* k_cache, const Act* v_cache,
                        const int32_t* rows, const int32_t* pos, int N, int C, int H, int n_ctx,
                        int band) override {
    const int hs = C / H;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel for schedule(static)
    for (int task = 0; task < N * H; task++) {
      const int i = task / H, h = task % H, p = pos[i];
      const int j0 = band > 0 && p - band + 1 > 0 ? p - band + 1 : 0;
      const float* q = F(qkv) + static_cast<size_t>(i) * 3 * C + h * hs;
      const size_t slot = (static_cast<size_t>(rows[i]) * H + h) * n_ctx;
      const float* K = F(k_cache) + slot * hs;
      const float* V = F(v_cache) + slot * hs;
      float* s = static_cast<float*>(scratch) + static_cast<size_t>(task) * n_ctx;
      float mx = -INFINITY;
      for (int j = j0; j <= p; j++) {
        float dot = 0.0f;
        for (int d = 0; d < hs; d++) dot += q[d] * K[static_cast<size_t>(j) * hs + d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      float sum = 0.0f;
      for (int j = j0; j <= p; j++) {
        s[j] = std::exp(s[j] - mx);
        sum += s[j];
      }
      float* o = F(out) + static_cast<size_t>(i) * C + h * hs;
      for (int d = 0; d < hs; d++) o[d] = 0.0f;
      for (int j = j0; j <= p; j++) {
        const float pj = s[j] / sum;
        for (int d = 0; d < hs; d++) o[d] += pj * V[static_cast<size_t>(j) * hs + d];
      }
    }
  }

  void residual_forward(Act* out, const Act* a, const Act* b, size_t n, ops::Dropout drop) override {
    ops::residual_forward(F(out), F(a), F(b), n, drop);
  }
  void dropout_forward(Act* x, size_t n, ops::Dropout drop) override { ops::dropout_forward(F(x), n, drop); }
  void dropout_backward(Act* dinp, const Act* dout, size_t n, ops::Dropout drop) override {
    ops::dropout_backward(F(dinp), F(dout), n, drop);
  }

  void lm_head_forward(Act* logits, const Act* x, const float* wte, int N, int C, int V) override {
    ops::lm_head_forward(F(logits), F(x), wte, N, C, V);
  }
  void lm_head_backward(Act* dx, float* dwte, const Act* dlogits, const Act* x, const float* wte, int N,
                        int C, int V) override {
    ops::lm_head_backward(F(dx), dwte, F(dlogits), F(x), wte, N, C, V);
  }
  double cross_entropy_forward(float* losses, float* lse, const Act* logits, const int32_t* targets, int N,
                               int V) override {
    return ops::cross_entropy_forward(losses, lse, F(logits), targets, N, V);
  }
  void cross_entropy_backward(Act* logits, const float* lse, const int32_t* targets, int N, int V,
                              float scale) override {
    ops::cross_entropy_backward(F(logits), lse, targets, N, V, scale);
  }

  void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                    const ops::AdamWStep& s) override {
    ops::adamw_update(param, grad, m, v, n, s);
  }
  double sum_squares(const float* x, size_t n) override { return ops::sum_squares(x, n); }
  void scale(float* x, size_t n, float factor) override { ops::scale(x, n, factor); }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

bool cuda_backend_built() { return cuda_compiled_in(); }

StagedCpuBackend& staged_cpu_backend() {
  static StagedCpuBackend backend;
  return backend;
}

Backend& backend_for(std::string_view device) {
  if (device == "cpu") return cpu_backend();
  if (device == "cpu-staged") return staged_cpu_backend();
  if (device == "cuda") {
    static std::unique_ptr<Backend> cuda =
        make_cuda_backend(ActType::BF16);  // a failed make retries next time
    return *cuda;
  }
  if (device == "cuda-fp32") {
    static std::unique_ptr<Backend> cuda = make_cuda_backend(ActType::F32);
    return *cuda;
  }
  fail("unknown device \"{}\" (expected cpu, cuda, cuda-fp32, or cpu-staged for tests)", device);
}

}  // namespace gpt
