// The CUDA backend: device memory, fp32 parameters, gradients and optimizer state, everything on
// one stream of the current device. Activations are bf16 ("cuda", mixed precision: the GEMMs read a
// bf16 copy of the parameters, the "shadow", refreshed by parameters_changed()) or fp32
// ("cuda-fp32": fp32 GEMMs on the fp32 parameters, no TF32), through cuBLASLt; the other operations
// are the kernels of backend/cuda/*.cu, templated on the activation type. See docs/backends.md.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/matmul.h"

namespace gpt {

class CudaBackend final : public Backend {
 public:
  // act: BF16 (mixed precision) or F32. Throws gpt::Error when no usable GPU is present.
  explicit CudaBackend(ActType act);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  DeviceKind kind() const override { return f32_ ? DeviceKind::CudaFp32 : DeviceKind::Cuda; }
  ActType act_type() const override { return f32_ ? ActType::F32 : ActType::BF16; }
  bool host_memory() const override { return false; }
  std::string device_description() const override { return description_; }
  double peak_bf16_flops() const override { return peak_bf16_; }
  int device_index() const override { return device_; }
  void* native_stream() override { return stream_; }

  void* allocate(size_t bytes) override;
  void release(void* p) override;
  void to_device(void* dst, const void* host_src, size_t bytes) override;
  void to_host(void* host_dst, const void* src, size_t bytes) override;
  void act_to_host_f32(float* host_dst, const Act* src, size_t n) override;
  void fill_zero(void* p, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  void parameters_changed(const float* params, size_t n) override;

  void embedding_forward(Act* out, const TokenId* ids, const Weight& wte, const float* wpe, int B, int T,
                         int C) override;
  void embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids,
                          const TokenId* host_ids, int B, int T, int C) override;
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
  void linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp, const float* w,
                       int N, int IC, int OC, bool accumulate) override;
  void gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) override;
  void linear_gelu_backward(Act* dinp, float* dw, float* dbias, Act* dpre, const Act* dout2, const float* w2,
                            const Act* inp, const Act* pre, const float* w, int N, int IC, int OC, int OC2,
                            bool accumulate) override;
  size_t attention_saved_bytes(int B, int T, int C, int H) const override;
  size_t attention_scratch_bytes(int B, int T, int C, int H) const override;
  void attention_forward(Act* out, void* saved, void* scratch, const Act* qkv, int B, int T, int C, int H,
                         int band, ops::Dropout drop, bool training) override;
  void attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv, const Act* out,
                          const void* saved, int B, int T, int C, int H, int band,
                          ops::Dropout drop) override;
  KvType kv_cache_type(ops::WeightType weights) const override;
  void kv_cache_write(void* k_cache, void* v_cache, KvType type, const Act* qkv, const CacheIndex& at, int N, int C,
                      int H, int n_ctx) override;
  size_t attention_cached_scratch_bytes(int N, int C, int H, int n_ctx) const override;
  void attention_cached(Act* out, void* scratch, const Act* qkv, const void* k_cache, const void* v_cache,
                        KvType type, const CacheIndex& at, int N, int C, int H, int n_ctx, int band,
                        const ops::AttentionCapture* capture) override;
  void embedding_at(Act* out, const TokenId* ids, const int32_t* pos, const Weight& wte, const float* wpe, int N,
                    int C) override;
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

 private:
  // The fp32 master of a forward operand: packed weights have no kernels here (adopt_weight refuses
  // them), so a Weight always carries its fp32 tensor.
  static const float* master(const Weight& w, const char* what);
  // What the GEMMs read for an fp32 parameter tensor: its bf16 shadow in mixed precision (it must
  // lie in the parameters last given to parameters_changed()), the tensor itself in fp32 mode.
  const void* weight(const float* w) const;
  // A product of activations (and weights) of the activation type.
  cuda::Gemm act_gemm(const cuda::GemmShape& shape) const;
  // A product with an optional epilogue (bias: the fp32 tensor whose weight() the epilogue reads;
  // GELU; GELU gradient), run by kernels after a plain product when cuBLASLt has no algorithm.
  void gemm(cuda::Gemm g, const float* bias);
  float* column_scratch(size_t floats);
  void free_now(void* p);
  void check_launch(const char* what);
  double reduce(const float* x, size_t n, bool square);

  bool f32_ = false;  // fp32 activations and products
  int device_ = 0;
  int sms_ = 0;
  size_t max_shared_ = 0;  // dynamic shared memory a block may opt into
  std::string description_;
  double peak_bf16_ = 0.0;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  std::unique_ptr<cuda::Matmul> matmul_;
  cuda::bf16* shadow_ = nullptr;
  size_t shadow_capacity_ = 0, shadow_n_ = 0;
  const float* shadow_of_ = nullptr;  // the fp32 parameters the shadow copies
  float* columns_ = nullptr;          // scratch of the column sums
  size_t columns_floats_ = 0;
  double* reduce_ = nullptr;    // partial sums, then the result
  int32_t* buckets_ = nullptr;  // embedding backward: tokens, starts, positions
  size_t buckets_capacity_ = 0;
  std::vector<uint32_t> host_ids_;
  cuda::TokenBuckets token_buckets_;
  std::vector<int32_t> host_buckets_;
};

}  // namespace gpt
