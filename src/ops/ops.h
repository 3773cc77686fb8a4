// The operations of a GPT, each with its forward and its backward side by side. CPU versions:
// the matrix products go to oneDNN or OpenBLAS (ops/cpu/ops.cpp); everything else is written in
// ops/cpu/kernels.inc, compiled once per instruction-set level and picked at run time
// (core/cpu.h). Shapes: N = B*T rows, C channels, V vocabulary, H heads.
//
// Conventions: backward functions ADD into parameter gradients (dw, db), so gradients
// accumulate over micro-batches; what they do to input gradients is stated per function.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tokenizer/tokenizer.h"

namespace gpt::ops {

// Inverted dropout with a counter-based mask: element i is kept iff hash(seed, i) >= p * 2^32,
// and kept values are scaled by 1/(1-p). The backward pass regenerates the same mask from
// (seed, i), so no mask is stored. p = 0 disables it.
struct Dropout {
  float p = 0.0f;
  uint32_t seed = 0;
  bool active() const { return p > 0.0f; }
};
// A per-site seed: one dropout_seed per step, mixed with the layer and the site inside it.
uint32_t dropout_seed(uint64_t step_seed, int layer, int site);

// ---- embeddings: out[n] = wte[ids[n]] + wpe[n % T] ----------------------------------------------
void embedding_forward(float* out, const TokenId* ids, const float* wte, const float* wpe, int B, int T,
                       int C);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const TokenId* ids, int B, int T, int C);

// ---- LayerNorm over the last dimension (b may be null: no bias) -------------------------------
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                       int N, int C, float eps);
// dinp += ..., dw += ..., db += ... (db may be null).
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int N, int C);

// ---- linear layer, GPT-2's Conv1D layout: out[N,OC] = inp[N,IC] @ w[IC,OC] + bias --------------
void linear_forward(float* out, const float* inp, const float* w, const float* bias, int N, int IC, int OC);
// dinp = (or += when accumulate) dout @ w^T; dw += inp^T @ dout; dbias += column sums of dout.
// Any of dinp, dw, dbias may be null.
void linear_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                     const float* w, int N, int IC, int OC, bool accumulate = false);

// ---- LM head, tied or not: logits[N,V] = x[N,C] @ wte[V,C]^T ------------------------------------
void lm_head_forward(float* logits, const float* x, const float* wte, int N, int C, int V);
// dx = dlogits @ wte (overwritten); dwte += dlogits^T @ x (dwte may be null: a frozen head).
void lm_head_backward(float* dx, float* dwte, const float* dlogits, const float* x, const float* wte, int N,
                      int C, int V);

// ---- LoRA: a low-rank update on a projection's output (model/lora.h) ----------------------------
// out[N,OUT] += scale * (drop(x) @ A^T) @ B^T, with x [N,IN], A [r,IN] and B [OUT,r] (PEFT's lora_A
// and lora_B). u [N,r] receives drop(x) @ A^T, which the backward needs; xd [N,IN] is scratch for
// the dropped input (untouched without dropout).
void lora_forward(float* out, float* u, float* xd, const float* x, const float* A, const float* B, int N, int IN,
                  int r, int OUT, float scale, Dropout drop);
// From dout [N,OUT] and the forward's u: dB += scale dout^T u, dA += du^T drop(x), and dinp (may be
// null) += drop'(du @ A), where du = scale dout @ B. du [N,r] and xd [N,IN] are scratch; the dropout
// mask is the forward's (seeded).
void lora_backward(float* dinp, float* dA, float* dB, float* du, float* xd, const float* dout, const float* x,
                   const float* u, const float* A, const float* B, int N, int IN, int r, int OUT, float scale,
                   Dropout drop);

// ---- causal multi-head self-attention over a fused qkv[B,T,3C] (q | k | v, heads side by side)
// band = 0: dense causal (query i sees keys j <= i); band = W > 0: i - W < j <= i.
// att[B,H,T,T] keeps the softmax probabilities for backward (null in inference; entries a query
// cannot see are 0 or never written). out[B,T,C] is the heads' outputs side by side.
// scratch: attention_scratch_floats(T) floats.
inline constexpr int kAttnBlock = 64;    // queries per block in the attention kernels
size_t attention_scratch_floats(int T);  // per call, for all threads
void attention_forward(float* out, float* att, float* scratch, const float* qkv, int B, int T, int C, int H,
                       int band, Dropout drop);
// dqkv = gradient of qkv (overwritten). scratch: attention_scratch_floats(T) floats.
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att,
                        int B, int T, int C, int H, int band, Dropout drop);

// ---- attention over a key/value cache (incremental decoding) ----------------------------------
// One layer's cache: keys and values, each [rows][H][n_ctx][head_dim], fp32 or IEEE half.
struct KvCacheView {
  void* k = nullptr;
  void* v = nullptr;
  int n_ctx = 0;
  bool f16 = false;
};
// Input i of a cached pass sits at position pos[i] of cache row rows[i]. Writes the keys and values
// of qkv's N rows ([N, 3C]) into their slots.
void kv_cache_write(const KvCacheView& kv, const float* qkv, const int32_t* rows, const int32_t* pos, int N, int C,
                    int H);
// The probabilities of one head during a prefill, for the attention view: out [T, T], row = the
// query's position, column = the key's; what the mask hides (and keys outside the pass's rows) 0.
// head = kAllHeads: every head's, out [H, T, T] (the inspection's entropies).
struct AttentionCapture {
  static constexpr int kAllHeads = -1;
  int head = 0;
  float* out = nullptr;
  int T = 0;
};
// out [N, C]: input i's query (qkv row i) attends to its cache row's keys at positions
// first..pos[i] (first = pos[i] - band + 1 when band > 0 and that is positive, else 0), its own
// included (kv_cache_write first). Consecutive inputs of one row at consecutive positions run as
// one block of queries (small sgemm calls: a prefill), a lone one as one pass over the cache (a
// decode step); the capture (may be null) does not change the arithmetic.
// scratch: attention_cached_scratch_floats(n_ctx, head_dim) floats.
size_t attention_cached_scratch_floats(int n_ctx, int head_dim);
void attention_cached(float* out, float* scratch, const float* qkv, const KvCacheView& kv, const int32_t* rows,
                      const int32_t* pos, int N, int C, int H, int band, const AttentionCapture* capture);

// ---- GELU, GPT-2's tanh approximation ---------------------------------------------------------
void gelu_forward(float* out, const float* inp, size_t n);
// dinp = dout * gelu'(inp); dinp may be dout (in place).
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);

// ---- residual adds and dropout ----------------------------------------------------------------
// out = a + dropout(b). out may alias a.
void residual_forward(float* out, const float* a, const float* b, size_t n, Dropout drop);
// x = dropout(x), in place.
void dropout_forward(float* x, size_t n, Dropout drop);
// dinp = dout * mask / (1-p): the backward of both of the above (for the dropped branch).
void dropout_backward(float* dinp, const float* dout, size_t n, Dropout drop);

// ---- softmax cross-entropy -------------------------------------------------------------------
// losses[n] = logsumexp(logits[n]) - logits[n][targets[n]] (0 where targets[n] < 0); lse[n]
// keeps logsumexp for the backward. Returns the sum of the scored losses (in double).
double cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets, int N,
                             int V);
// In place: logits[n] becomes scale * (softmax(logits[n]) - onehot(targets[n])); rows with an
// ignored target become 0.
void cross_entropy_backward(float* logits, const float* lse, const int32_t* targets, int N, int V,
                            float scale);

// ---- AdamW (decoupled weight decay), one tensor -----------------------------------------------
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^t
  float grad_scale = 1.0f;  // gradient clipping's factor, applied to each gradient as it is read
};
void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, const AdamWStep& s);

// Sum of squares of n floats (gradient norms), in double, in fixed chunks added in order: the same
// for any thread count.
double sum_squares(const float* x, size_t n);

// The instruction-set level the kernels run at ("avx512", "avx2" or "scalar").
const char* kernel_level();

// The engine's fp32 GEMM, row-major: C[M,N] = alpha op(A) op(B) + beta C, op = transpose when ta/tb.
// oneDNN's sgemm (JIT kernels for this CPU); GPT_GEMM=openblas switches to OpenBLAS for comparisons.
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);
const char* gemm_library();  // "onednn" or "openblas"


}  // namespace gpt::ops
