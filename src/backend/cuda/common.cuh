// Device helpers shared by the CUDA kernels: dropout (host_device.h's hash, the same bits as
// ops/cpu's, so both backends drop the same elements), warp reductions, launch sizes, and the
// conversions between fp32 and the activation types.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace gpt::cuda {

// x * mask / (1 - p) for element i, or x when dropout is off.
__device__ __forceinline__ float drop(float x, uint64_t i, const DropMask& d) {
  if (!d.active) return x;
  return keep(d.seed, i, d.threshold) ? x * d.scale : 0.0f;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffU, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffU, v, o));
  return v;
}

// Activations of either element type, read as and written from fp32.
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ bf16 to_bf(float x) { return __float2bfloat16(x); }  // round to nearest even
template <typename E>
__device__ __forceinline__ E from_f(float x);
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float x) {
  return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}

// Blocks for n elements at `threads` per block, capped for grid-stride loops.
inline unsigned blocks_for(size_t n, int threads) {
  const size_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65536 * 8 ? (b ? b : 1) : 65536 * 8);
}

}  // namespace gpt::cuda

// Explicit instantiations of a function template for both activation types: F(bf16) F(float).
#define GPT_FOR_ACT_TYPES(F) F(gpt::cuda::bf16) F(float)
