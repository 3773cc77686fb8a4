// The CPU backend: host memory, fp32 activations, the kernels of ops/cpu. Every operation is the
// ops.h function of the same name; the fused ones run their parts one after the other. Declared here
// so that the device-style test backends (staged_backend.h) are the CPU backend with other memory,
// not a copy of its operations.
#pragma once
#include "backend/backend.h"
#include "ops/packed.h"

namespace gpt {

class CpuBackend : public Backend {
 public:
  DeviceKind kind() const override;
  ActType act_type() const override;
  bool host_memory() const override;

  void* allocate(size_t bytes) override;
  void release(void* p) override;
  void to_device(void* dst, const void* src, size_t bytes) override;
  void to_host(void* dst, const void* src, size_t bytes) override;
  void act_to_host_f32(float* dst, const Act* src, size_t n) override;
  void fill_zero(void* p, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  void parameters_changed(const float*, size_t) override;

  std::unique_ptr<PackedWeight> adopt_weight(ops::PackedMatrix&& m) override;

  void embedding_forward(Act* out, const TokenId* ids, const Weight& wte, const float* wpe, int B, int T,
                         int C) override;
  void embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids, const TokenId*,
                          int B, int T, int C) override;

  void layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* w, const float* b,
                         int N, int C, float eps) override;
  void layernorm_backward(Act* dinp, float* dw, float* db, const Act* dout, const Act* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override;
  void residual_layernorm_forward(Act* res, Act* out, float* mean, float* rstd, const Act* a, const Act* b,
                                  ops::Dropout drop, const float* w, const float* bias, int N, int C,
                                  float eps) override;

  void linear_forward(Act* out, const Act* inp, const Weight& w, const float* bias, int N, int IC,
                      int OC) override;
  void linear_gelu_forward(Act* out, Act* pre, const Act* inp, const Weight& w, const float* bias, int N,
                           int IC, int OC) override;
  void gelu_forward(Act* out, const Act* inp, size_t n) override;
  void lora_forward(Act* out, Act* u, Act* xd, const Act* x, const float* A, const float* B, int N, int IN,
                    int r, int OUT, float scale, ops::Dropout drop) override;
  void lora_backward(Act* dinp, float* dA, float* dB, Act* du, Act* xd, const Act* dout, const Act* x,
                     const Act* u, const float* A, const float* B, int N, int IN, int r, int OUT, float scale,
                     ops::Dropout drop) override;

  void linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp, const float* w,
                       int N, int IC, int OC, bool accumulate) override;
  void gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) override;
  void linear_gelu_backward(Act* dinp, float* dw, float* dbias, Act* dpre, const Act* dout2, const float* w2,
                            const Act* inp, const Act* pre, const float* w, int N, int IC, int OC, int OC2,
                            bool accumulate) override;

  // The CPU kernels keep the softmax probabilities [B,H,T,T] for the backward.
  size_t attention_saved_bytes(int B, int T, int, int H) const override;
  size_t attention_scratch_bytes(int, int T, int, int) const override;
  void attention_forward(Act* out, void* saved, void* scratch, const Act* qkv, int B, int T, int C, int H,
                         int band, ops::Dropout drop, bool training) override;
  void attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv, const Act*,
                          const void* saved, int B, int T, int C, int H, int band,
                          ops::Dropout drop) override;

  // Key/value caches: the CPU keeps fp32 next to fp32 weights, IEEE half next to rounded ones (half
  // the bytes a decode step reads, for a model already rounded).
  KvType kv_cache_type(ops::WeightType weights) const override;
  static ops::KvCacheView view(const void* k, const void* v, KvType type, int n_ctx);
  void kv_cache_write(void* k, void* v, KvType type, const Act* qkv, const CacheIndex& at, int N, int C,
                      int H, int n_ctx) override;
  size_t attention_cached_scratch_bytes(int, int C, int H, int n_ctx) const override;
  void attention_cached(Act* out, void* scratch, const Act* qkv, const void* k, const void* v, KvType type,
                        const CacheIndex& at, int N, int C, int H, int n_ctx, int band,
                        const ops::AttentionCapture* capture) override;
  void embedding_at(Act* out, const TokenId* ids, const int32_t* pos, const Weight& wte, const float* wpe,
                    int N, int C) override;

  void residual_forward(Act* out, const Act* a, const Act* b, size_t n, ops::Dropout drop) override;
  void dropout_forward(Act* x, size_t n, ops::Dropout drop) override;
  void dropout_backward(Act* dinp, const Act* dout, size_t n, ops::Dropout drop) override;

  void lm_head_forward(Act* logits, const Act* x, const Weight& wte, int N, int C, int V) override;
  void lm_head_backward(Act* dx, float* dwte, const Act* dlogits, const Act* x, const float* wte, int N,
                        int C, int V) override;
  double cross_entropy_forward(float* losses, float* lse, const Act* logits, const int32_t* targets, int N,
                               int V) override;
  void cross_entropy_backward(Act* logits, const float* lse, const int32_t* targets, int N, int V,
                              float scale) override;

  void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                    const ops::AdamWStep& s) override;
  double sum_squares(const float* x, size_t n) override;
};

}  // namespace gpt
