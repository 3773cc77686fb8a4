// The CUDA kernels of the CUDA backend, as host functions that launch them on a stream. Each
// mirrors the ops.h function of the same name (ops/cpu/kernels.inc is the reference), with bf16
// activations and fp32 parameters, gradients and statistics. Launch errors are left for the caller
// to pick up with cudaGetLastError(). This header is plain C++ (compiled by g++ and nvcc alike).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/host_device.h"

namespace gpt::cuda {

using bf16 = __nv_bfloat16;

// ---- conversions and element-wise -----------------------------------------------------------------
void f32_to_bf16(bf16* out, const float* in, size_t n, cudaStream_t s);
void embedding_forward(bf16* out, const uint32_t* ids, const float* wte, const float* wpe, int B, int T,
                       int C, cudaStream_t s);
// dwpe[t] += sum over b of dout[b, t] (in b order).
void embedding_backward_wpe(float* dwpe, const bf16* dout, int B, int T, int C, cudaStream_t s);
// dwte[ids[p]] += sum of dout rows at the positions of one bucket: bucket u holds token tokens[u]
// and the positions order[starts[u] .. starts[u+1]) in ascending order.
void embedding_backward_wte(float* dwte, const bf16* dout, const int32_t* tokens, const int32_t* starts,
                            const int32_t* order, int buckets, int C, cudaStream_t s);
void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, DropMask d, cudaStream_t s);
void dropout_forward(bf16* x, size_t n, DropMask d, cudaStream_t s);
void dropout_backward(bf16* dinp, const bf16* dout, size_t n, DropMask d, cudaStream_t s);
void gelu_forward(bf16* out, const bf16* inp, size_t n, cudaStream_t s);
void gelu_backward(bf16* dinp, const bf16* pre, const bf16* dout, size_t n, cudaStream_t s);
// out[n, c] += bias[c] (fp32 bias): the bias of a GEMM that ran without the epilogue.
void add_bias(bf16* out, const float* bias, int N, int OC, cudaStream_t s);
void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2,
                  cudaStream_t s);
void scale(float* x, size_t n, float factor, cudaStream_t s);
// Deterministic sum (square = false) or sum of squares of n fp32 values in double, into *result
// (device memory). partials: reduce_partials() doubles of scratch.
int reduce_partials();
void reduce_sum(double* result, double* partials, const float* x, size_t n, bool square, cudaStream_t s);

// ---- column sums over rows, deterministic: two passes through an fp32 scratch ----------------------
// The first pass sums column_chunks(N) chunks of rows into scratch[chunk, C]; the second adds the
// chunks, in order, into out[C].
int column_chunks(int N);
size_t column_scratch_floats(int N, int C);
void column_finish(float* out, const float* scratch, int chunks, int C, cudaStream_t s);
// dbias[c] += sum over n of dout[n, c].
void bias_backward(float* dbias, const bf16* dout, int N, int C, float* scratch, cudaStream_t s);

// ---- LayerNorm --------------------------------------------------------------------------------------
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const float* w, const float* b,
                       int N, int C, float eps, cudaStream_t s);
// res = a + dropout(b) (rounded to bf16), then out = LayerNorm(res). res may alias a.
void residual_layernorm_forward(bf16* res, bf16* out, float* mean, float* rstd, const bf16* a, const bf16* b,
                                DropMask d, const float* w, const float* bias, int N, int C, float eps,
                                cudaStream_t s);
// dinp += ..., dw += ..., db += ... (db may be null). scratch: 2 * column_scratch_floats(N, C).
void layernorm_backward(bf16* dinp, float* dw, float* db, const bf16* dout, const bf16* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t s);

// ---- attention over qkv[B, T, 3C] ---------------------------------------------------------------------
// lse[B, H, T]: the log-sum-exp of each query's scaled scores (null in inference). Both return the
// launch's error (or that of raising the kernels' shared-memory limit).
constexpr int kMaxHeadSize = 128;
// Dynamic shared memory per block the attention kernels need for head size hs (the largest of them).
size_t attention_shared_bytes(int hs);
cudaError_t attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int H, int band,
                              DropMask d, cudaStream_t s);
// dqkv overwritten. delta: B*H*T floats of scratch.
cudaError_t attention_backward(bf16* dqkv, float* delta, const bf16* dout, const bf16* qkv, const bf16* out,
                               const float* lse, int B, int T, int C, int H, int band, DropMask d,
                               cudaStream_t s);

// ---- cross-entropy over bf16 logits -----------------------------------------------------------------
// targets may be null (no losses: all 0).
void cross_entropy_forward(float* losses, float* lse, const bf16* logits, const int32_t* targets, int N,
                           int V, cudaStream_t s);
void cross_entropy_backward(bf16* logits, const float* lse, const int32_t* targets, int N, int V, float scale,
                            cudaStream_t s);

}  // namespace gpt::cuda
