// KV-cache decoding (Backend::kv_cache_write / attention_cached, which GPT::forward_cached runs): writing keys and values into a layer's cache, and
// the attention of one query per row over its cached keys. Caches are [rows][H][n_ctx][hs] of E,
// so one (row, head)'s keys are one contiguous [n_ctx, hs] matrix.
//
// The decode attention is split-K: the keys of one (query, head) are cut into `splits` pieces, one
// block per piece (grid (N H, splits)). A block's warps take its keys in turn; a key's score is one
// warp-wide dot product (each lane holds hs/32 channels of the query), the scores go to shared
// memory, then each warp sums exp(s - max) V over its keys and the warps' sums are added. With one
// piece the block writes the output; with several it writes (max, sum, weighted values) and a
// second kernel merges the pieces. Splits keep the GPU busy at batch 1 (12 heads are 12 blocks)
// and are 1 at large batches. fp32 arithmetic throughout.
#include <math.h>

#include <algorithm>

#include "backend/cuda/common.cuh"

namespace gpt::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPer = kMaxHeadSize / 32;  // query channels per lane
constexpr int kMaxSplits = 32;
constexpr int kMaxPiece = 4096;  // keys per piece at most: the scores fit in 16 KiB of shared memory

template <typename E>
__global__ void kv_write_kernel(E* k, E* v, const E* qkv, const int32_t* rows, const int32_t* pos, int C,
                                int H, int n_ctx, size_t total) {
  const int hs = C / H;
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < total;
       i += size_t{gridDim.x} * blockDim.x) {
    const size_t n = i / C;
    const int c = static_cast<int>(i % C), h = c / hs, d = c % hs;
    const size_t at = ((static_cast<size_t>(rows[n]) * H + h) * n_ctx + pos[n]) * hs + d;
    const E* src = qkv + n * 3 * C + c;
    k[at] = src[C];
    v[at] = src[2 * C];
  }
}

// One piece of one (query, head): part[(nh * splits + piece) * (hs + 2) + ...] = the weighted values,
// then the max and the sum of exp(s - max); with one piece, the output itself.
template <typename E>
__global__ void __launch_bounds__(kThreads)
    decode_kernel(E* out, float* part, const E* qkv, const E* kc, const E* vc, const int32_t* rows,
                  const int32_t* pos, int C, int H, int n_ctx, int band, float scale) {
  extern __shared__ float sh[];
  const int hs = C / H, splits = gridDim.y, piece = blockIdx.y;
  const int nh = blockIdx.x, n = nh / H, h = nh % H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* scores = sh;                                // [keys per piece]
  float* sacc = sh + (n_ctx + splits - 1) / splits;  // [kWarps][hs]
  float* sred = sacc + kWarps * hs;                  // [kWarps]: maxima, then sums
  const int p = pos[n];
  const int first = band > 0 && p - band + 1 > 0 ? p - band + 1 : 0;
  const int per = (p - first + 1 + splits - 1) / splits;
  const int k0 = first + piece * per, k1 = min(k0 + per, p + 1);
  const size_t slot = (static_cast<size_t>(rows[n]) * H + h) * n_ctx;
  const E* K = kc + slot * hs;
  const E* V = vc + slot * hs;

  float q[kPer];
#pragma unroll
  for (int e = 0; e < kPer; e++) {
    const int c = lane + 32 * e;
    q[e] = c < hs ? to_f(qkv[static_cast<size_t>(n) * 3 * C + h * hs + c]) : 0.0f;
  }
  float mx = -INFINITY;
  for (int j = k0 + warp; j < k1; j += kWarps) {
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < kPer; e++) {
      const int c = lane + 32 * e;
      if (c < hs) s += q[e] * to_f(K[static_cast<size_t>(j) * hs + c]);
    }
    s = warp_sum(s) * scale;
    if (lane == 0) scores[j - k0] = s;
    mx = fmaxf(mx, s);
  }
  if (lane == 0) sred[warp] = mx;
  __syncthreads();
  float M = sred[0];
  for (int w = 1; w < kWarps; w++) M = fmaxf(M, sred[w]);
  __syncthreads();  // sred is reused below

  float acc[kPer] = {}, l = 0.0f;
  for (int j = k0 + warp; j < k1; j += kWarps) {
    const float e = expf(scores[j - k0] - M);
    l += e;
#pragma unroll
    for (int x = 0; x < kPer; x++) {
      const int c = lane + 32 * x;
      if (c < hs) acc[x] += e * to_f(V[static_cast<size_t>(j) * hs + c]);
    }
  }
#pragma unroll
  for (int x = 0; x < kPer; x++) {
    const int c = lane + 32 * x;
    if (c < hs) sacc[warp * hs + c] = acc[x];
  }
  if (lane == 0) sred[warp] = l;
  __syncthreads();
  float L = 0.0f;
  for (int w = 0; w < kWarps; w++) L += sred[w];
  for (int c = threadIdx.x; c < hs; c += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < kWarps; w++) a += sacc[w * hs + c];
    if (splits == 1) {
      out[static_cast<size_t>(n) * C + h * hs + c] = from_f<E>(a / L);
    } else {
      float* pp = part + (static_cast<size_t>(nh) * splits + piece) * (hs + 2);
      pp[c] = a;
      if (c == 0) {
        pp[hs] = M;
        pp[hs + 1] = L;
      }
    }
  }
}

// Merges the pieces of each (query, head): a block per pair, a thread per channel.
template <typename E>
__global__ void decode_merge_kernel(E* out, const float* part, int C, int H, int splits) {
  const int hs = C / H, nh = blockIdx.x, n = nh / H, h = nh % H;
  const float* pp = part + static_cast<size_t>(nh) * splits * (hs + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; s++) M = fmaxf(M, pp[s * (hs + 2) + hs]);
  float L = 0.0f;
  for (int s = 0; s < splits; s++) {
    const float* q = pp + s * (hs + 2);
    if (q[hs + 1] > 0.0f) L += q[hs + 1] * expf(q[hs] - M);
  }
  for (int c = threadIdx.x; c < hs; c += blockDim.x) {
    float a = 0.0f;
    for (int s = 0; s < splits; s++) {
      const float* q = pp + s * (hs + 2);
      if (q[hs + 1] > 0.0f) a += q[c] * expf(q[hs] - M);  // an empty piece has max -inf
    }
    out[static_cast<size_t>(n) * C + h * hs + c] = from_f<E>(a / L);
  }
}

}  // namespace

template <typename E>
void kv_cache_write(E* k_cache, E* v_cache, const E* qkv, const int32_t* rows, const int32_t* pos, int N,
                    int C, int H, int n_ctx, cudaStream_t s) {
  const size_t total = static_cast<size_t>(N) * C;
  if (total)
    kv_write_kernel<<<blocks_for(total, 256), 256, 0, s>>>(k_cache, v_cache, qkv, rows, pos, C, H, n_ctx,
                                                           total);
}

int decode_splits(int N, int H, int n_ctx, int sms) {
  const int pairs = std::max(1, N * H);
  int splits = (2 * std::max(1, sms) + pairs - 1) / pairs;  // two blocks per SM
  splits = std::min(splits, std::max(1, n_ctx / 64));       // at least 64 keys per piece at full context
  splits = std::max(1, std::min(splits, kMaxSplits));
  return std::max(splits, (n_ctx + kMaxPiece - 1) / kMaxPiece);
}

size_t decode_scratch_bytes(int N, int C, int H, int n_ctx, int sms) {
  const int splits = decode_splits(N, H, n_ctx, sms);
  return splits == 1 ? 0 : static_cast<size_t>(N) * H * splits * (C / H + 2) * sizeof(float);
}

template <typename E>
cudaError_t attention_decode(E* out, float* scratch, const E* qkv, const E* k_cache, const E* v_cache,
                             const int32_t* rows, const int32_t* pos, int N, int C, int H, int n_ctx,
                             int band, int sms, cudaStream_t s) {
  if (N <= 0) return cudaSuccess;
  const int hs = C / H, splits = decode_splits(N, H, n_ctx, sms);
  const size_t shared = ((n_ctx + splits - 1) / splits + kWarps * hs + kWarps) * sizeof(float);
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  decode_kernel<<<dim3(N * H, splits), kThreads, shared, s>>>(out, scratch, qkv, k_cache, v_cache, rows, pos,
                                                              C, H, n_ctx, band, scale);
  if (splits > 1)
    decode_merge_kernel<<<N * H, std::min(kMaxHeadSize, ((hs + 31) / 32) * 32), 0, s>>>(out, scratch, C, H,
                                                                                        splits);
  return cudaGetLastError();
}

#define INSTANTIATE(E)                                                                               \
  template void kv_cache_write(E*, E*, const E*, const int32_t*, const int32_t*, int, int, int, int, \
                               cudaStream_t);                                                        \
  template cudaError_t attention_decode(E*, float*, const E*, const E*, const E*, const int32_t*,    \
                                        const int32_t*, int, int, int, int, int, int, cudaStream_t);
GPT_FOR_ACT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace gpt::cuda
