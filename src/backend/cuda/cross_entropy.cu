// Softmax cross-entropy straight from the logits (bf16, or fp32 in fp32 mode): the forward reads
// each row once (an online max and sum in fp32), the backward overwrites the logits with their
// gradient in place, so in mixed precision the fp32 logits [N, V] never exist.
#include <math.h>

#include "backend/cuda/common.cuh"

namespace gpt::cuda {
namespace {

constexpr int kThreads = 256;

// Merges the running (max, sum of exp(x - max)) pair (m2, s2) into (m, s).
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // both empty
  s = s * expf(m - M) + s2 * expf(m2 - M);
  m = M;
}

template <typename E>
__global__ void cross_entropy_forward_kernel(float* losses, float* lse, const E* logits,
                                             const int32_t* targets, int V) {
  __shared__ float sm[kThreads / 32], ss[kThreads / 32];
  const int n = blockIdx.x;
  const E* l = logits + static_cast<size_t>(n) * V;
  float m = -INFINITY, s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = to_f(l[v]);
    if (x > m) {
      s = s * expf(m - x) + 1.0f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffU, m, o), s2 = __shfl_xor_sync(0xffffffffU, s, o);
    merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = sm[0], S = ss[0];
    for (int w = 1; w < kThreads / 32; w++) merge(M, S, sm[w], ss[w]);
    // The log and the difference in double: the loss keeps its own float precision, not that of
    // the larger log-sum-exp.
    const double z = static_cast<double>(M) + log(static_cast<double>(S));
    lse[n] = static_cast<float>(z);
    const int32_t t = targets ? targets[n] : -1;
    losses[n] = t >= 0 ? static_cast<float>(z - static_cast<double>(to_f(l[t]))) : 0.0f;
  }
}

template <typename E>
__global__ void cross_entropy_backward_kernel(E* logits, const float* lse, const int32_t* targets, int V,
                                              float scale) {
  const int n = blockIdx.x;
  E* l = logits + static_cast<size_t>(n) * V;
  const int32_t t = targets[n];
  if (t < 0) {
    for (int v = threadIdx.x; v < V; v += blockDim.x) l[v] = from_f<E>(0.0f);
    return;
  }
  const float z = lse[n];
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(to_f(l[v]) - z) * scale;
    l[v] = from_f<E>(v == t ? p - scale : p);
  }
}

}  // namespace

template <typename E>
void cross_entropy_forward(float* losses, float* lse, const E* logits, const int32_t* targets, int N, int V,
                           cudaStream_t s) {
  if (N > 0) cross_entropy_forward_kernel<<<N, kThreads, 0, s>>>(losses, lse, logits, targets, V);
}

template <typename E>
void cross_entropy_backward(E* logits, const float* lse, const int32_t* targets, int N, int V, float scale,
                            cudaStream_t s) {
  if (N > 0) cross_entropy_backward_kernel<<<N, kThreads, 0, s>>>(logits, lse, targets, V, scale);
}

#define INSTANTIATE(E)                                                                                   \
  template void cross_entropy_forward(float*, float*, const E*, const int32_t*, int, int, cudaStream_t); \
  template void cross_entropy_backward(E*, const float*, const int32_t*, int, int, float, cudaStream_t);
GPT_FOR_ACT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace gpt::cuda
