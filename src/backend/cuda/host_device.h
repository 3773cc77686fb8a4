// What the CUDA backend's host code and kernels share, in plain C++ so that the tests check it on
// any machine, GPU or not (test_cuda_backend.cpp, CudaHost.*): the dropout hash, the mapping of
// the model's row-major products onto cuBLAS's column-major GEMMs, and the token buckets of the
// deterministic embedding backward.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#if defined(__CUDACC__)
#define GPT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GPT_HOST_DEVICE inline
#endif

namespace gpt::cuda {

// ---- dropout: the hash and keep rule of ops/cpu/kernels.inc, bit for bit -----------------------------

GPT_HOST_DEVICE uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}
// Element i survives iff its hash clears the threshold p * 2^32.
GPT_HOST_DEVICE bool keep(uint32_t seed, uint64_t i, uint32_t threshold) {
  const uint32_t lo = static_cast<uint32_t>(i), hi = static_cast<uint32_t>(i >> 32);
  return mix32(mix32(lo ^ seed) ^ (hi * 0x9e3779b9U)) >= threshold;
}

// ops::Dropout reduced to what the kernels need; scale = 1/(1-p).
struct DropMask {
  uint32_t seed = 0, threshold = 0;
  float scale = 1.0f;
  bool active = false;
};
inline DropMask drop_mask(float p, uint32_t seed) {
  DropMask m;
  m.active = p > 0.0f;
  if (m.active) {
    m.seed = seed;
    m.threshold = static_cast<uint32_t>(static_cast<double>(p) * 4294967296.0);  // as the CPU
    m.scale = 1.0f / (1.0f - p);
  }
  return m;
}

// ---- GEMM shapes -------------------------------------------------------------------------------------
// cuBLAS computes column-major D[m, n] = op(A)[m, k] @ op(B)[k, n]. A row-major X[r, c] is the
// column-major X^T with the same leading dimension, so a row-major Y = X @ W is Y^T = W^T @ X^T:
// A is the weight, B the activation, and a bias per output channel runs along D's rows.
struct GemmShape {
  bool ta = false, tb = false;  // op = transpose
  int m = 0, n = 0, k = 0;
  int lda = 0, ldb = 0, ldd = 0;
};
// out[N, OC] = inp[N, IC] @ w[IC, OC]: A = w, B = inp, D = out.
inline GemmShape linear_forward_shape(int N, int IC, int OC) { return {false, false, OC, N, IC, OC, IC, OC}; }
// dinp[N, IC] = dout[N, OC] @ w^T: A = w, B = dout, D = dinp.
inline GemmShape linear_dinp_shape(int N, int IC, int OC) { return {true, false, IC, N, OC, OC, OC, IC}; }
// dw[IC, OC] (+)= inp^T @ dout: A = dout, B = inp, D = dw.
inline GemmShape linear_dw_shape(int N, int IC, int OC) { return {false, true, OC, IC, N, OC, IC, OC}; }
// logits[N, V] = x[N, C] @ wte[V, C]^T: A = wte, B = x, D = logits.
inline GemmShape lm_head_shape(int N, int C, int V) { return {true, false, V, N, C, C, C, V}; }
// dx[N, C] = dlogits[N, V] @ wte: A = wte, B = dlogits, D = dx.
inline GemmShape lm_head_dx_shape(int N, int C, int V) { return {false, false, C, N, V, C, V, C}; }
// dwte[V, C] (+)= dlogits^T @ x: A = x, B = dlogits, D = dwte.
inline GemmShape lm_head_dwte_shape(int N, int C, int V) { return {false, true, C, V, N, C, V, C}; }

// ---- token buckets --------------------------------------------------------------------------------------
// Positions grouped by token: bucket u holds token tokens[u] at the positions
// order[starts[u] .. starts[u + 1]), ascending. One GPU block per bucket then sums its rows in a
// fixed order: a deterministic embedding backward with no atomics.
struct TokenBuckets {
  std::vector<int32_t> tokens, starts, order;
};
inline void bucket_tokens(const uint32_t* ids, size_t N, TokenBuckets& b) {
  b.order.resize(N);
  std::iota(b.order.begin(), b.order.end(), 0);
  std::stable_sort(b.order.begin(), b.order.end(), [&](int32_t x, int32_t y) { return ids[x] < ids[y]; });
  b.tokens.clear();
  b.starts.clear();
  for (size_t p = 0; p < N; p++) {
    if (p == 0 || ids[b.order[p]] != ids[b.order[p - 1]]) {
      b.tokens.push_back(static_cast<int32_t>(ids[b.order[p]]));
      b.starts.push_back(static_cast<int32_t>(p));
    }
  }
  b.starts.push_back(static_cast<int32_t>(N));
}

// Opens cuBLAS and cuBLASLt (once per process) and resolves every function the backend calls;
// throws gpt::Error naming what is missing. Needs no GPU. Defined in CUDA builds only (matmul.cpp).
void load_cublas();

}  // namespace gpt::cuda
