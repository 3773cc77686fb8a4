// Causal self-attention in fp32, for the CUDA backend's fp32 mode ("cuda-fp32"): the conformance
// mode, so plain fp32 arithmetic on CUDA cores (no tensor cores, no TF32) rather than speed. One
// warp per query (forward, dQ) or per key (dK and dV); each lane holds kPer channels of the head.
// The same contract as the bf16 kernels of attention.cu: the forward saves the log-sum-exp of each
// query's scaled scores, the backward recomputes the probabilities from it with delta = dO . O,
// dropout drops probabilities with the CPU's hash at ((b H + h) T + i) T + j, and nothing uses
// atomics (deterministic).
#include <math.h>

#include "backend/cuda/common.cuh"

namespace gpt::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPer = kMaxHeadSize / 32;  // channels per lane

struct Params {
  const float* qkv;
  float* out;
  float* lse;
  const float* dout;
  const float* o;
  float* delta;
  float* dqkv;
  int B, T, C, H, hs, band;
  DropMask d;
  float scale;
};

// This lane's channels of the head vector at p: x[e] = p[lane + 32 e] (0 past hs).
__device__ __forceinline__ void load(float (&x)[kPer], const float* p, int hs, int lane) {
#pragma unroll
  for (int e = 0; e < kPer; e++) {
    const int c = lane + 32 * e;
    x[e] = c < hs ? p[c] : 0.0f;
  }
}
// x . p over the head, summed across the warp (every lane gets the sum).
__device__ __forceinline__ float dot(const float (&x)[kPer], const float* p, int hs, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < kPer; e++) {
    const int c = lane + 32 * e;
    if (c < hs) s += x[e] * p[c];
  }
  return warp_sum(s);
}
__device__ __forceinline__ void axpy(float (&y)[kPer], float a, const float* p, int hs, int lane) {
#pragma unroll
  for (int e = 0; e < kPer; e++) {
    const int c = lane + 32 * e;
    if (c < hs) y[e] += a * p[c];
  }
}
__device__ __forceinline__ void store(float* p, const float (&x)[kPer], float f, int hs, int lane) {
#pragma unroll
  for (int e = 0; e < kPer; e++) {
    const int c = lane + 32 * e;
    if (c < hs) p[c] = x[e] * f;
  }
}
__device__ __forceinline__ int first_key(int i, int band) {
  return band > 0 && i - band + 1 > 0 ? i - band + 1 : 0;
}

// One warp per query i, an online softmax over its keys.
__global__ void __launch_bounds__(kThreads) forward_kernel(Params p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int i = blockIdx.y * kWarps + warp;
  if (i >= p.T) return;
  const size_t C3 = 3 * static_cast<size_t>(p.C);
  const float* base = p.qkv + static_cast<size_t>(b) * p.T * C3 + h * p.hs;
  float q[kPer], acc[kPer] = {};
  load(q, base + i * C3, p.hs, lane);
  float m = -INFINITY, l = 0.0f;
  for (int j = first_key(i, p.band); j <= i; j++) {
    const float s = dot(q, base + j * C3 + p.C, p.hs, lane) * p.scale;
    const float m_new = fmaxf(m, s);
    const float alpha = expf(m - m_new), e = expf(s - m_new);
    l = l * alpha + e;
    const float pd = drop(e, (static_cast<uint64_t>(bh) * p.T + i) * p.T + j, p.d);
#pragma unroll
    for (int k = 0; k < kPer; k++) acc[k] *= alpha;
    axpy(acc, pd, base + j * C3 + 2 * p.C, p.hs, lane);
    m = m_new;
  }
  store(p.out + (static_cast<size_t>(b) * p.T + i) * p.C + h * p.hs, acc, 1.0f / l, p.hs, lane);
  if (p.lse && lane == 0) p.lse[static_cast<size_t>(bh) * p.T + i] = m + logf(l);
}

// delta[bh, i] = dO_i . O_i, one warp per row.
__global__ void __launch_bounds__(kThreads) delta_kernel(Params p) {
  const size_t R = static_cast<size_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (R >= static_cast<size_t>(p.B) * p.H * p.T) return;
  const int lane = threadIdx.x % 32;
  const size_t bh = R / p.T;
  const int i = static_cast<int>(R % p.T), b = static_cast<int>(bh / p.H), h = static_cast<int>(bh % p.H);
  const size_t off = (static_cast<size_t>(b) * p.T + i) * p.C + h * p.hs;
  float x[kPer];
  load(x, p.dout + off, p.hs, lane);
  const float sum = dot(x, p.o + off, p.hs, lane);
  if (lane == 0) p.delta[R] = sum;
}

// The probability of one visible score (before and after dropout) and the score's gradient.
__device__ __forceinline__ void score_grads(float& pr, float& pd, float& ds, float s, float dp, float lse,
                                            float delta, uint64_t idx, const Params& p) {
  pr = expf(s * p.scale - lse);
  pd = pr;
  if (p.d.active) {
    const bool kept = keep(p.d.seed, idx, p.d.threshold);
    pd = kept ? pr * p.d.scale : 0.0f;
    dp = kept ? dp * p.d.scale : 0.0f;
  }
  ds = pr * (dp - delta) * p.scale;
}

// dQ: one warp per query, over its keys.
__global__ void __launch_bounds__(kThreads) dq_kernel(Params p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int i = blockIdx.y * kWarps + warp;
  if (i >= p.T) return;
  const size_t C3 = 3 * static_cast<size_t>(p.C);
  const float* base = p.qkv + static_cast<size_t>(b) * p.T * C3 + h * p.hs;
  float q[kPer], g[kPer], dq[kPer] = {};
  load(q, base + i * C3, p.hs, lane);
  load(g, p.dout + (static_cast<size_t>(b) * p.T + i) * p.C + h * p.hs, p.hs, lane);
  const float lse = p.lse[static_cast<size_t>(bh) * p.T + i],
              delta = p.delta[static_cast<size_t>(bh) * p.T + i];
  for (int j = first_key(i, p.band); j <= i; j++) {
    const float* k = base + j * C3 + p.C;
    float pr, pd, ds;
    score_grads(pr, pd, ds, dot(q, k, p.hs, lane), dot(g, k + p.C, p.hs, lane), lse, delta,
                (static_cast<uint64_t>(bh) * p.T + i) * p.T + j, p);
    axpy(dq, ds, k, p.hs, lane);
  }
  store(p.dqkv + (static_cast<size_t>(b) * p.T + i) * C3 + h * p.hs, dq, 1.0f, p.hs, lane);
}

// dK and dV: one warp per key, over the queries that see it.
__global__ void __launch_bounds__(kThreads) dkv_kernel(Params p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int j = blockIdx.y * kWarps + warp;
  if (j >= p.T) return;
  const size_t C3 = 3 * static_cast<size_t>(p.C);
  const float* base = p.qkv + static_cast<size_t>(b) * p.T * C3 + h * p.hs;
  const float* dbase = p.dout + static_cast<size_t>(b) * p.T * p.C + h * p.hs;
  float k[kPer], v[kPer], dk[kPer] = {}, dv[kPer] = {};
  load(k, base + j * C3 + p.C, p.hs, lane);
  load(v, base + j * C3 + 2 * p.C, p.hs, lane);
  const int i_end = p.band > 0 ? min(p.T - 1, j + p.band - 1) : p.T - 1;
  for (int i = j; i <= i_end; i++) {
    const float* q = base + i * C3;
    const float* g = dbase + static_cast<size_t>(i) * p.C;
    const size_t r = static_cast<size_t>(bh) * p.T + i;
    float pr, pd, ds;
    score_grads(pr, pd, ds, dot(k, q, p.hs, lane), dot(v, g, p.hs, lane), p.lse[r], p.delta[r],
                (static_cast<uint64_t>(bh) * p.T + i) * p.T + j, p);
    axpy(dv, pd, g, p.hs, lane);
    axpy(dk, ds, q, p.hs, lane);
  }
  float* row = p.dqkv + (static_cast<size_t>(b) * p.T + j) * C3 + h * p.hs;
  store(row + p.C, dk, 1.0f, p.hs, lane);
  store(row + 2 * p.C, dv, 1.0f, p.hs, lane);
}

Params make_params(const float* qkv, int B, int T, int C, int H, int band, DropMask d) {
  Params p{};
  p.qkv = qkv;
  p.B = B;
  p.T = T;
  p.C = C;
  p.H = H;
  p.hs = C / H;
  p.band = band;
  p.d = d;
  p.scale = 1.0f / sqrtf(static_cast<float>(p.hs));
  return p;
}

dim3 grid(int B, int H, int T) { return dim3(B * H, (T + kWarps - 1) / kWarps); }

}  // namespace

cudaError_t attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int H, int band,
                              DropMask d, cudaStream_t s) {
  Params p = make_params(qkv, B, T, C, H, band, d);
  p.out = out;
  p.lse = lse;
  forward_kernel<<<grid(B, H, T), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t attention_backward(float* dqkv, float* delta, const float* dout, const float* qkv,
                               const float* out, const float* lse, int B, int T, int C, int H, int band,
                               DropMask d, cudaStream_t s) {
  Params p = make_params(qkv, B, T, C, H, band, d);
  p.dout = dout;
  p.o = out;
  p.lse = const_cast<float*>(lse);  // read only in the backward kernels
  p.delta = delta;
  p.dqkv = dqkv;
  const size_t rows = static_cast<size_t>(B) * H * T;
  delta_kernel<<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, s>>>(p);
  dq_kernel<<<grid(B, H, T), kThreads, 0, s>>>(p);
  dkv_kernel<<<grid(B, H, T), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace gpt::cuda
