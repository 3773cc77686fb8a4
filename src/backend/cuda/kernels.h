// The CUDA kernels of the CUDA backend, as host functions that launch them on a stream. Each
// mirrors the ops.h function of the same name (ops/cpu/kernels.inc is the reference), with fp32
// parameters, gradients and statistics. Activations have the element type E: bf16 (mixed
// precision, "cuda") or float ("cuda-fp32"); the templates are instantiated for both in the .cu
// files. Launch errors are left for the caller to pick up with cudaGetLastError(). This header is
// plain C++ (compiled by g++ and nvcc alike).
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
template <typename E>
void embedding_forward(E* out, const uint32_t* ids, const float* wte, const float* wpe, int B, int T, int C,
                       cudaStream_t s);
// out[i] = wte[ids[i]] + wpe[pos[i]].
template <typename E>
void embedding_at(E* out, const uint32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                  int C, cudaStream_t s);
// dwpe[t] += sum over b of dout[b, t] (in b order).
template <typename E>
void embedding_backward_wpe(float* dwpe, const E* dout, int B, int T, int C, cudaStream_t s);
// dwte[ids[p]] += sum of dout rows at the positions of one bucket: bucket u holds token tokens[u]
// and the positions order[starts[u] .. starts[u+1]) in ascending order.
template <typename E>
void embedding_backward_wte(float* dwte, const E* dout, const int32_t* tokens, const int32_t* starts,
                            const int32_t* order, int buckets, int C, cudaStream_t s);
template <typename E>
void residual_forward(E* out, const E* a, const E* b, size_t n, DropMask d, cudaStream_t s);
template <typename E>
void dropout_forward(E* x, size_t n, DropMask d, cudaStream_t s);
template <typename E>
void dropout_backward(E* dinp, const E* dout, size_t n, DropMask d, cudaStream_t s);
template <typename E>
void gelu_forward(E* out, const E* inp, size_t n, cudaStream_t s);
template <typename E>
void gelu_backward(E* dinp, const E* pre, const E* dout, size_t n, cudaStream_t s);
// out[n, c] += bias[c] (fp32 bias): the bias of a GEMM that ran without the epilogue.
template <typename E>
void add_bias(E* out, const float* bias, int N, int OC, cudaStream_t s);
void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2,
                  float grad_scale, cudaStream_t s);
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
template <typename E>
void bias_backward(float* dbias, const E* dout, int N, int C, float* scratch, cudaStream_t s);

// ---- LayerNorm --------------------------------------------------------------------------------------
template <typename E>
void layernorm_forward(E* out, float* mean, float* rstd, const E* inp, const float* w, const float* b, int N,
                       int C, float eps, cudaStream_t s);
// res = a + dropout(b) (rounded to E), then out = LayerNorm(res). res may alias a.
template <typename E>
void residual_layernorm_forward(E* res, E* out, float* mean, float* rstd, const E* a, const E* b, DropMask d,
                                const float* w, const float* bias, int N, int C, float eps, cudaStream_t s);
// dinp += ..., dw += ..., db += ... (db may be null). scratch: 2 * column_scratch_floats(N, C).
template <typename E>
void layernorm_backward(E* dinp, float* dw, float* db, const E* dout, const E* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t s);

// ---- attention over qkv[B, T, 3C] ---------------------------------------------------------------------
// lse[B, H, T]: the log-sum-exp of each query's scaled scores (null in inference). All return the
// launch's error (or that of raising the kernels' shared-memory limit).
constexpr int kMaxHeadSize = 128;
// bf16: flash-attention style on tensor cores (attention.cu). Dynamic shared memory per block the
// kernels need for head size hs (the largest of them).
size_t attention_shared_bytes(int hs);
cudaError_t attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int H, int band,
                              DropMask d, cudaStream_t s);
// dqkv overwritten. delta: B*H*T floats of scratch.
cudaError_t attention_backward(bf16* dqkv, float* delta, const bf16* dout, const bf16* qkv, const bf16* out,
                               const float* lse, int B, int T, int C, int H, int band, DropMask d,
                               cudaStream_t s);
// fp32: one warp per query (forward, dQ) or key (dK, dV) on CUDA cores, no tensor cores and no TF32
// (attention_f32.cu); the same contract and saved state.
cudaError_t attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int H, int band,
                              DropMask d, cudaStream_t s);
cudaError_t attention_backward(float* dqkv, float* delta, const float* dout, const float* qkv,
                               const float* out, const float* lse, int B, int T, int C, int H, int band,
                               DropMask d, cudaStream_t s);

// ---- KV-cache decoding (decode.cu): caches [rows][H][n_ctx][hs] of E ----------------------------------
template <typename E>
void kv_cache_write(E* k_cache, E* v_cache, const E* qkv, const int32_t* rows, const int32_t* pos, int N,
                    int C, int H, int n_ctx, cudaStream_t s);
// How many pieces the keys of one (query, head) are split into, and the scratch that takes.
int decode_splits(int N, int H, int n_ctx, int sms);
size_t decode_scratch_bytes(int N, int C, int H, int n_ctx, int sms);
template <typename E>
cudaError_t attention_decode(E* out, float* scratch, const E* qkv, const E* k_cache, const E* v_cache,
                             const int32_t* rows, const int32_t* pos, int N, int C, int H, int n_ctx,
                             int band, int sms, cudaStream_t s);

// ---- cross-entropy over logits of E -------------------------------------------------------------------
// targets may be null (no losses: all 0).
template <typename E>
void cross_entropy_forward(float* losses, float* lse, const E* logits, const int32_t* targets, int N, int V,
                           cudaStream_t s);
template <typename E>
void cross_entropy_backward(E* logits, const float* lse, const int32_t* targets, int N, int V, float scale,
                            cudaStream_t s);

}  // namespace gpt::cuda
