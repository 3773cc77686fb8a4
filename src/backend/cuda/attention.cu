// Causal self-attention, flash-attention style: tiles of queries and keys in shared memory, the
// products on tensor cores (wmma, bf16 in, fp32 accumulate), an online softmax in fp32, and no
// [T, T] matrix in global memory. The forward keeps only the log-sum-exp of each query's scaled
// scores; the backward recomputes the probabilities from it.
//
// Backward, deterministically (no atomics): one kernel per key tile accumulates dK and dV over the
// queries that see it, another per query tile accumulates dQ over its keys; both recompute
// P = exp(S - lse). With delta_i = dO_i . O_i, dS = P * (dP - delta) where dP = dO V^T after the
// dropout mask: the same quantity as the CPU's rowsum(P * dP), since O = dropout(P) V.
//
// Dropout drops probabilities with the CPU's hash at index ((b H + h) T + i) T + j.
//
// Shared-memory tiles are padded (+8 bf16, +4 fp32 per row) against bank conflicts; the head size
// is padded to a multiple of 16 with zeros (hs <= 128).
#include <math.h>
#include <mma.h>

#include <algorithm>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace gpt::cuda {
namespace {

using namespace nvcuda;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
// Tile sizes (queries x keys) of the three kernels; each warp owns 16 rows of its block's tile.
constexpr int kFwdQ = 64, kFwdK = 64;  // forward
constexpr int kKvQ = 32, kKvK = 64;    // backward, dK and dV: one key tile per block
constexpr int kDqQ = 64, kDqK = 32;    // backward, dQ: one query tile per block

struct Params {
  const bf16* qkv;
  bf16* out;         // forward output
  float* lse;        // [B, H, T]: written by the forward (when set), read by the backward
  const bf16* dout;  // backward
  const bf16* o;     // the forward's output, for delta
  float* delta;      // [B, H, T]
  bf16* dqkv;
  int B, T, C, H, hs, DP, band;
  DropMask d;
  float scale;
  bool vec;  // 16-byte loads: hs, C multiples of 8 and the pointers 16-byte aligned
};

// acc += A[16 x K] @ B[K x 16]; row_major A is read along its rows from a, col_major A is the
// transpose of a row-major matrix at a (likewise for B).
template <typename LA, typename LB>
__device__ __forceinline__ void mma_k(FragC& acc, const bf16* a, int lda, const bf16* b, int ldb, int K) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB> fb;
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
  constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
  for (int k = 0; k < K; k += 16) {
    wmma::load_matrix_sync(fa, a_row ? a + k : a + static_cast<size_t>(k) * lda, lda);
    wmma::load_matrix_sync(fb, b_row ? b + static_cast<size_t>(k) * ldb : b + k, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

// s[rows][ld] = rows r0.. of one head's slice (columns col..col+hs of rows of `stride` elements),
// zero past T and past hs.
__device__ void load_tile(bf16* s, int ld, const bf16* g, int stride, int col, int r0, int rows,
                          const Params& p) {
  if (p.vec) {
    const int chunks = p.DP / 8;
    for (int i = threadIdx.x; i < rows * chunks; i += blockDim.x) {
      const int r = i / chunks, c = (i % chunks) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r0 + r < p.T && c < p.hs)
        v = *reinterpret_cast<const uint4*>(g + static_cast<size_t>(r0 + r) * stride + col + c);
      *reinterpret_cast<uint4*>(s + r * ld + c) = v;
    }
  } else {
    for (int i = threadIdx.x; i < rows * p.DP; i += blockDim.x) {
      const int r = i / p.DP, c = i % p.DP;
      s[r * ld + c] =
          r0 + r < p.T && c < p.hs ? g[static_cast<size_t>(r0 + r) * stride + col + c] : to_bf(0.0f);
    }
  }
}

__device__ __forceinline__ bool visible(int i, int j, int T, int band) {
  return i < T && j <= i && (band == 0 || j > i - band);
}
__device__ __forceinline__ int first_key(int i, int band) {
  return band > 0 && i - band + 1 > 0 ? i - band + 1 : 0;
}

// Carves the dynamic shared memory into regions, each 128-byte aligned.
struct Carver {
  unsigned char* p;
  template <typename T>
  __device__ T* take(size_t n) {
    T* r = reinterpret_cast<T*>(p);
    p += (n * sizeof(T) + 127) / 128 * 128;
    return r;
  }
};
constexpr size_t region(size_t bytes) { return (bytes + 127) / 128 * 128; }

// The tile leading dimensions for a padded head size DP.
__host__ __device__ constexpr int ld_h(int DP) { return DP + 8; }  // bf16 [rows][DP]
__host__ __device__ constexpr int ld_o(int DP) { return DP + 4; }  // fp32 [rows][DP]
__host__ __device__ constexpr int ld_s(int K) { return K + 4; }    // fp32 [rows][K]
__host__ __device__ constexpr int ld_p(int K) { return K + 8; }    // bf16 [rows][K]

size_t forward_smem(int DP) {
  return region(2u * kFwdQ * ld_h(DP)) + 2 * region(2u * kFwdK * ld_h(DP)) +
         region(4u * kFwdQ * ld_s(kFwdK)) + region(2u * kFwdQ * ld_p(kFwdK)) + region(4u * kFwdQ * ld_o(DP)) +
         2 * region(4u * kFwdQ);
}
size_t dkv_smem(int DP) {
  return 2 * region(2u * kKvK * ld_h(DP)) + 2 * region(2u * kKvQ * ld_h(DP)) +
         2 * region(4u * kKvQ * ld_s(kKvK)) + 2 * region(2u * kKvQ * ld_p(kKvK)) +
         2 * region(4u * kKvK * ld_o(DP)) + 2 * region(4u * kKvQ);
}
size_t dq_smem(int DP) {
  return 2 * region(2u * kDqQ * ld_h(DP)) + 2 * region(2u * kDqK * ld_h(DP)) +
         2 * region(4u * kDqQ * ld_s(kDqK)) + region(2u * kDqQ * ld_p(kDqK)) + region(4u * kDqQ * ld_o(DP)) +
         2 * region(4u * kDqQ);
}

// ---- forward: one block per (b, h) and kFwdQ queries ------------------------------------------------

__global__ void __launch_bounds__(kThreads) attention_forward_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int DP = p.DP, ldh = ld_h(DP), ldo = ld_o(DP), lds = ld_s(kFwdK), ldp = ld_p(kFwdK);
  Carver cv{smem};
  bf16* sQ = cv.take<bf16>(kFwdQ * ldh);
  bf16* sK = cv.take<bf16>(kFwdK * ldh);
  bf16* sV = cv.take<bf16>(kFwdK * ldh);
  float* sS = cv.take<float>(kFwdQ * lds);
  bf16* sP = cv.take<bf16>(kFwdQ * ldp);
  float* sO = cv.take<float>(kFwdQ * ldo);
  float* sM = cv.take<float>(kFwdQ);  // running max of each row
  float* sL = cv.take<float>(kFwdQ);  // running sum of exp(s - max), before dropout

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int q0 = blockIdx.y * kFwdQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int C3 = 3 * p.C;
  const bf16* base = p.qkv + static_cast<size_t>(b) * p.T * C3;

  load_tile(sQ, ldh, base, C3, h * p.hs, q0, kFwdQ, p);
  for (int i = threadIdx.x; i < kFwdQ * ldo; i += blockDim.x) sO[i] = 0.0f;
  for (int i = threadIdx.x; i < kFwdQ; i += blockDim.x) {
    sM[i] = -INFINITY;
    sL[i] = 0.0f;
  }
  const int q_last = min(q0 + kFwdQ, p.T) - 1;
  for (int k0 = first_key(q0, p.band) / kFwdK * kFwdK; k0 <= q_last; k0 += kFwdK) {
    __syncthreads();  // the last tile's readers are done with sK, sV
    load_tile(sK, ldh, base, C3, p.C + h * p.hs, k0, kFwdK, p);
    load_tile(sV, ldh, base, C3, 2 * p.C + h * p.hs, k0, kFwdK, p);
    __syncthreads();
    // S = Q K^T for this warp's 16 rows
    for (int jn = 0; jn < kFwdK / 16; jn++) {
      FragC acc;
      wmma::fill_fragment(acc, 0.0f);
      mma_k<wmma::row_major, wmma::col_major>(acc, sQ + warp * 16 * ldh, ldh, sK + jn * 16 * ldh, ldh, DP);
      wmma::store_matrix_sync(sS + warp * 16 * lds + jn * 16, acc, lds, wmma::mem_row_major);
    }
    __syncwarp();
    // online softmax of the warp's rows; each lane holds kFwdK / 32 columns
    for (int rr = 0; rr < 16; rr++) {
      const int r = warp * 16 + rr, i = q0 + r;
      float sv[kFwdK / 32];
      float mx = -INFINITY;
#pragma unroll
      for (int e = 0; e < kFwdK / 32; e++) {
        const int c = lane + 32 * e;
        sv[e] = visible(i, k0 + c, p.T, p.band) ? sS[r * lds + c] * p.scale : -INFINITY;
        mx = fmaxf(mx, sv[e]);
      }
      mx = warp_max(mx);
      const float m_old = sM[r];
      const float m_new = fmaxf(m_old, mx);
      float alpha = 1.0f, psum = 0.0f;
#pragma unroll
      for (int e = 0; e < kFwdK / 32; e++) {
        const int c = lane + 32 * e;
        float pr = 0.0f, pd = 0.0f;
        if (sv[e] != -INFINITY) {
          pr = expf(sv[e] - m_new);
          pd = p.d.active ? drop(pr, (static_cast<uint64_t>(bh) * p.T + i) * p.T + k0 + c, p.d) : pr;
        }
        psum += pr;
        sP[r * ldp + c] = to_bf(pd);
      }
      psum = warp_sum(psum);
      if (m_new != -INFINITY) alpha = expf(m_old - m_new);
      __syncwarp();  // every lane has read sM[r]
      if (lane == 0) {
        sM[r] = m_new;
        sL[r] = sL[r] * alpha + psum;
      }
      if (alpha != 1.0f)
        for (int c = lane; c < DP; c += 32) sO[r * ldo + c] *= alpha;
    }
    __syncwarp();
    // O += P V for the warp's rows
    for (int dn = 0; dn < DP / 16; dn++) {
      FragC acc;
      wmma::load_matrix_sync(acc, sO + warp * 16 * ldo + dn * 16, ldo, wmma::mem_row_major);
      mma_k<wmma::row_major, wmma::row_major>(acc, sP + warp * 16 * ldp, ldp, sV + dn * 16, ldh, kFwdK);
      wmma::store_matrix_sync(sO + warp * 16 * ldo + dn * 16, acc, ldo, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kFwdQ * p.hs; idx += blockDim.x) {
    const int r = idx / p.hs, c = idx % p.hs, i = q0 + r;
    if (i < p.T)
      p.out[(static_cast<size_t>(b) * p.T + i) * p.C + h * p.hs + c] = to_bf(sO[r * ldo + c] / sL[r]);
  }
  if (p.lse)
    for (int r = threadIdx.x; r < kFwdQ; r += blockDim.x)
      if (q0 + r < p.T) p.lse[static_cast<size_t>(bh) * p.T + q0 + r] = sM[r] + logf(sL[r]);
}

// ---- backward ------------------------------------------------------------------------------------------

// delta[bh, i] = dO_i . O_i, one warp per row.
__global__ void attention_delta_kernel(Params p) {
  const size_t R = static_cast<size_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (R >= static_cast<size_t>(p.B) * p.H * p.T) return;
  const int lane = threadIdx.x % 32;
  const size_t bh = R / p.T;
  const int i = static_cast<int>(R % p.T), b = static_cast<int>(bh / p.H), h = static_cast<int>(bh % p.H);
  const size_t off = (static_cast<size_t>(b) * p.T + i) * p.C + h * p.hs;
  float sum = 0.0f;
  for (int c = lane; c < p.hs; c += 32) sum += to_f(p.dout[off + c]) * to_f(p.o[off + c]);
  sum = warp_sum(sum);
  if (lane == 0) p.delta[R] = sum;
}

// P' (dropped probabilities) and dS of one visible score, from S, dP' = dO V^T, lse and delta.
__device__ __forceinline__ void score_grads(float& pd, float& ds, float s, float dp, float lse, float delta,
                                            uint64_t idx, const Params& p) {
  const float pr = expf(s * p.scale - lse);
  pd = pr;
  if (p.d.active) {
    const bool kept = keep(p.d.seed, idx, p.d.threshold);
    pd = kept ? pr * p.d.scale : 0.0f;
    dp = kept ? dp * p.d.scale : 0.0f;
  }
  ds = pr * (dp - delta) * p.scale;
}

// dK, dV of kKvK keys: the query tiles that see them, kKvQ queries at a time.
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int DP = p.DP, ldh = ld_h(DP), ldo = ld_o(DP), lds = ld_s(kKvK), ldp = ld_p(kKvK);
  Carver cv{smem};
  bf16* sK = cv.take<bf16>(kKvK * ldh);
  bf16* sV = cv.take<bf16>(kKvK * ldh);
  bf16* sQ = cv.take<bf16>(kKvQ * ldh);
  bf16* sdO = cv.take<bf16>(kKvQ * ldh);
  float* sS = cv.take<float>(kKvQ * lds);
  float* sdP = cv.take<float>(kKvQ * lds);
  bf16* sP = cv.take<bf16>(kKvQ * ldp);
  bf16* sdS = cv.take<bf16>(kKvQ * ldp);
  float* sdK = cv.take<float>(kKvK * ldo);
  float* sdV = cv.take<float>(kKvK * ldo);
  float* sLse = cv.take<float>(kKvQ);
  float* sDelta = cv.take<float>(kKvQ);

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int k0 = blockIdx.y * kKvK;
  const int warp = threadIdx.x / 32;
  const int C3 = 3 * p.C;
  const bf16* base = p.qkv + static_cast<size_t>(b) * p.T * C3;
  const bf16* dbase = p.dout + static_cast<size_t>(b) * p.T * p.C;

  load_tile(sK, ldh, base, C3, p.C + h * p.hs, k0, kKvK, p);
  load_tile(sV, ldh, base, C3, 2 * p.C + h * p.hs, k0, kKvK, p);
  for (int i = threadIdx.x; i < kKvK * ldo; i += blockDim.x) sdK[i] = sdV[i] = 0.0f;
  // queries before k0 see none of these keys; with a band, none after k0 + kKvK - 1 + band - 1
  const int q_end = p.band > 0 ? min(p.T - 1, k0 + kKvK + p.band - 2) : p.T - 1;
  for (int q0 = k0; q0 <= q_end; q0 += kKvQ) {
    __syncthreads();
    load_tile(sQ, ldh, base, C3, h * p.hs, q0, kKvQ, p);
    load_tile(sdO, ldh, dbase, p.C, h * p.hs, q0, kKvQ, p);
    for (int r = threadIdx.x; r < kKvQ; r += blockDim.x) {
      const bool in = q0 + r < p.T;
      sLse[r] = in ? p.lse[static_cast<size_t>(bh) * p.T + q0 + r] : 0.0f;
      sDelta[r] = in ? p.delta[static_cast<size_t>(bh) * p.T + q0 + r] : 0.0f;
    }
    __syncthreads();
    // S = Q K^T and dP' = dO V^T, kKvQ x kKvK: each warp two fragments of each
    {
      const int fr = warp % (kKvQ / 16), fc0 = warp / (kKvQ / 16) * 2;
      for (int f = 0; f < 2; f++) {
        const int jn = fc0 + f;
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        mma_k<wmma::row_major, wmma::col_major>(acc, sQ + fr * 16 * ldh, ldh, sK + jn * 16 * ldh, ldh, DP);
        wmma::store_matrix_sync(sS + fr * 16 * lds + jn * 16, acc, lds, wmma::mem_row_major);
        wmma::fill_fragment(acc, 0.0f);
        mma_k<wmma::row_major, wmma::col_major>(acc, sdO + fr * 16 * ldh, ldh, sV + jn * 16 * ldh, ldh, DP);
        wmma::store_matrix_sync(sdP + fr * 16 * lds + jn * 16, acc, lds, wmma::mem_row_major);
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kKvQ * kKvK; idx += blockDim.x) {
      const int r = idx / kKvK, c = idx % kKvK, i = q0 + r, j = k0 + c;
      float pd = 0.0f, ds = 0.0f;
      if (visible(i, j, p.T, p.band))
        score_grads(pd, ds, sS[r * lds + c], sdP[r * lds + c], sLse[r], sDelta[r],
                    (static_cast<uint64_t>(bh) * p.T + i) * p.T + j, p);
      sP[r * ldp + c] = to_bf(pd);
      sdS[r * ldp + c] = to_bf(ds);
    }
    __syncthreads();
    // dV += P'^T dO and dK += dS^T Q for the warp's 16 keys
    for (int dn = 0; dn < DP / 16; dn++) {
      FragC acc;
      wmma::load_matrix_sync(acc, sdV + warp * 16 * ldo + dn * 16, ldo, wmma::mem_row_major);
      mma_k<wmma::col_major, wmma::row_major>(acc, sP + warp * 16, ldp, sdO + dn * 16, ldh, kKvQ);
      wmma::store_matrix_sync(sdV + warp * 16 * ldo + dn * 16, acc, ldo, wmma::mem_row_major);
      wmma::load_matrix_sync(acc, sdK + warp * 16 * ldo + dn * 16, ldo, wmma::mem_row_major);
      mma_k<wmma::col_major, wmma::row_major>(acc, sdS + warp * 16, ldp, sQ + dn * 16, ldh, kKvQ);
      wmma::store_matrix_sync(sdK + warp * 16 * ldo + dn * 16, acc, ldo, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kKvK * p.hs; idx += blockDim.x) {
    const int r = idx / p.hs, c = idx % p.hs, j = k0 + r;
    if (j >= p.T) continue;
    bf16* row = p.dqkv + (static_cast<size_t>(b) * p.T + j) * C3 + h * p.hs + c;
    row[p.C] = to_bf(sdK[r * ldo + c]);
    row[2 * p.C] = to_bf(sdV[r * ldo + c]);
  }
}

// dQ of kDqQ queries: the key tiles they see, kDqK keys at a time.
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int DP = p.DP, ldh = ld_h(DP), ldo = ld_o(DP), lds = ld_s(kDqK), ldp = ld_p(kDqK);
  Carver cv{smem};
  bf16* sQ = cv.take<bf16>(kDqQ * ldh);
  bf16* sdO = cv.take<bf16>(kDqQ * ldh);
  bf16* sK = cv.take<bf16>(kDqK * ldh);
  bf16* sV = cv.take<bf16>(kDqK * ldh);
  float* sS = cv.take<float>(kDqQ * lds);
  float* sdP = cv.take<float>(kDqQ * lds);
  bf16* sdS = cv.take<bf16>(kDqQ * ldp);
  float* sdQ = cv.take<float>(kDqQ * ldo);
  float* sLse = cv.take<float>(kDqQ);
  float* sDelta = cv.take<float>(kDqQ);

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int q0 = blockIdx.y * kDqQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int C3 = 3 * p.C;
  const bf16* base = p.qkv + static_cast<size_t>(b) * p.T * C3;
  const bf16* dbase = p.dout + static_cast<size_t>(b) * p.T * p.C;

  load_tile(sQ, ldh, base, C3, h * p.hs, q0, kDqQ, p);
  load_tile(sdO, ldh, dbase, p.C, h * p.hs, q0, kDqQ, p);
  for (int i = threadIdx.x; i < kDqQ * ldo; i += blockDim.x) sdQ[i] = 0.0f;
  for (int r = threadIdx.x; r < kDqQ; r += blockDim.x) {
    const bool in = q0 + r < p.T;
    sLse[r] = in ? p.lse[static_cast<size_t>(bh) * p.T + q0 + r] : 0.0f;
    sDelta[r] = in ? p.delta[static_cast<size_t>(bh) * p.T + q0 + r] : 0.0f;
  }
  const int q_last = min(q0 + kDqQ, p.T) - 1;
  for (int k0 = first_key(q0, p.band) / kDqK * kDqK; k0 <= q_last; k0 += kDqK) {
    __syncthreads();
    load_tile(sK, ldh, base, C3, p.C + h * p.hs, k0, kDqK, p);
    load_tile(sV, ldh, base, C3, 2 * p.C + h * p.hs, k0, kDqK, p);
    __syncthreads();
    for (int jn = 0; jn < kDqK / 16; jn++) {
      FragC acc;
      wmma::fill_fragment(acc, 0.0f);
      mma_k<wmma::row_major, wmma::col_major>(acc, sQ + warp * 16 * ldh, ldh, sK + jn * 16 * ldh, ldh, DP);
      wmma::store_matrix_sync(sS + warp * 16 * lds + jn * 16, acc, lds, wmma::mem_row_major);
      wmma::fill_fragment(acc, 0.0f);
      mma_k<wmma::row_major, wmma::col_major>(acc, sdO + warp * 16 * ldh, ldh, sV + jn * 16 * ldh, ldh, DP);
      wmma::store_matrix_sync(sdP + warp * 16 * lds + jn * 16, acc, lds, wmma::mem_row_major);
    }
    __syncwarp();
    for (int idx = lane; idx < 16 * kDqK; idx += 32) {
      const int r = warp * 16 + idx / kDqK, c = idx % kDqK, i = q0 + r, j = k0 + c;
      float pd = 0.0f, ds = 0.0f;
      if (visible(i, j, p.T, p.band))
        score_grads(pd, ds, sS[r * lds + c], sdP[r * lds + c], sLse[r], sDelta[r],
                    (static_cast<uint64_t>(bh) * p.T + i) * p.T + j, p);
      sdS[r * ldp + c] = to_bf(ds);
    }
    __syncwarp();
    // dQ += dS K for the warp's rows
    for (int dn = 0; dn < DP / 16; dn++) {
      FragC acc;
      wmma::load_matrix_sync(acc, sdQ + warp * 16 * ldo + dn * 16, ldo, wmma::mem_row_major);
      mma_k<wmma::row_major, wmma::row_major>(acc, sdS + warp * 16 * ldp, ldp, sK + dn * 16, ldh, kDqK);
      wmma::store_matrix_sync(sdQ + warp * 16 * ldo + dn * 16, acc, ldo, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kDqQ * p.hs; idx += blockDim.x) {
    const int r = idx / p.hs, c = idx % p.hs, i = q0 + r;
    if (i < p.T) p.dqkv[(static_cast<size_t>(b) * p.T + i) * C3 + h * p.hs + c] = to_bf(sdQ[r * ldo + c]);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

Params make_params(const bf16* qkv, int B, int T, int C, int H, int band, DropMask d) {
  Params p{};
  p.qkv = qkv;
  p.B = B;
  p.T = T;
  p.C = C;
  p.H = H;
  p.hs = C / H;
  p.DP = (p.hs + 15) / 16 * 16;
  p.band = band;
  p.d = d;
  p.scale = 1.0f / sqrtf(static_cast<float>(p.hs));
  p.vec = C % 8 == 0 && p.hs % 8 == 0 && aligned16(qkv);
  return p;
}

// Raises a kernel's dynamic shared-memory limit to what it needs (once per size).
template <typename Kernel>
cudaError_t reserve_smem(Kernel kernel, size_t bytes, size_t& reserved) {
  if (bytes <= reserved) return cudaSuccess;
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e == cudaSuccess) reserved = bytes;
  return e;
}
size_t fwd_reserved = 0, dkv_reserved = 0, dq_reserved = 0;

}  // namespace

size_t attention_shared_bytes(int hs) {
  const int DP = (hs + 15) / 16 * 16;
  return std::max(forward_smem(DP), std::max(dkv_smem(DP), dq_smem(DP)));
}

cudaError_t attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int H, int band,
                              DropMask d, cudaStream_t s) {
  Params p = make_params(qkv, B, T, C, H, band, d);
  p.out = out;
  p.lse = lse;
  const size_t bytes = forward_smem(p.DP);
  if (const cudaError_t e = reserve_smem(attention_forward_kernel, bytes, fwd_reserved); e != cudaSuccess)
    return e;
  attention_forward_kernel<<<dim3(B * H, (T + kFwdQ - 1) / kFwdQ), kThreads, bytes, s>>>(p);
  return cudaGetLastError();
}

cudaError_t attention_backward(bf16* dqkv, float* delta, const bf16* dout, const bf16* qkv, const bf16* out,
                               const float* lse, int B, int T, int C, int H, int band, DropMask d,
                               cudaStream_t s) {
  Params p = make_params(qkv, B, T, C, H, band, d);
  p.dout = dout;
  p.o = out;
  p.lse = const_cast<float*>(lse);  // read only in the backward kernels
  p.delta = delta;
  p.dqkv = dqkv;
  p.vec = p.vec && aligned16(dout);
  const size_t rows = static_cast<size_t>(B) * H * T;
  attention_delta_kernel<<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, s>>>(p);
  const size_t kv_bytes = dkv_smem(p.DP), q_bytes = dq_smem(p.DP);
  if (const cudaError_t e = reserve_smem(attention_dkv_kernel, kv_bytes, dkv_reserved); e != cudaSuccess)
    return e;
  if (const cudaError_t e = reserve_smem(attention_dq_kernel, q_bytes, dq_reserved); e != cudaSuccess)
    return e;
  attention_dkv_kernel<<<dim3(B * H, (T + kKvK - 1) / kKvK), kThreads, kv_bytes, s>>>(p);
  attention_dq_kernel<<<dim3(B * H, (T + kDqQ - 1) / kDqQ), kThreads, q_bytes, s>>>(p);
  return cudaGetLastError();
}

}  // namespace gpt::cuda
