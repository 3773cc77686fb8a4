// LayerNorm forward (alone and fused with the residual add before it) and backward. One warp per
// row, statistics in fp32 with two passes over the row like the CPU kernel; the parameter
// gradients are column sums done in two deterministic passes (elementwise.cu's column_finish).
#include "backend/cuda/common.cuh"

namespace gpt::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

// Normalises the row x (already rounded to E) into out; lanes stride over the channels.
template <typename E>
__device__ __forceinline__ void normalise_row(E* out, float* mean, float* rstd, const E* x, const float* w,
                                              const float* b, int n, int C, float eps, int lane) {
  float sum = 0.0f;
  for (int c = lane; c < C; c += 32) sum += to_f(x[c]);
  const float m = warp_sum(sum) / static_cast<float>(C);
  float var = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = to_f(x[c]) - m;
    var += d * d;
  }
  const float s = 1.0f / sqrtf(warp_sum(var) / static_cast<float>(C) + eps);
  for (int c = lane; c < C; c += 32) {
    const float y = (to_f(x[c]) - m) * s * w[c];
    out[c] = from_f<E>(b ? y + b[c] : y);
  }
  if (lane == 0) {
    mean[n] = m;
    rstd[n] = s;
  }
}

template <typename E>
__global__ void layernorm_forward_kernel(E* out, float* mean, float* rstd, const E* inp, const float* w,
                                         const float* b, int N, int C, float eps) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (n >= N) return;
  const size_t off = static_cast<size_t>(n) * C;
  normalise_row(out + off, mean, rstd, inp + off, w, b, n, C, eps, threadIdx.x % 32);
}

// res = a + dropout(b) is rounded to E first and the statistics are taken of the rounded row,
// the same values the backward reads back.
template <typename E>
__global__ void residual_layernorm_kernel(E* res, E* out, float* mean, float* rstd, const E* a, const E* b,
                                          DropMask d, const float* w, const float* bias, int N, int C,
                                          float eps) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (n >= N) return;
  const int lane = threadIdx.x % 32;
  const size_t off = static_cast<size_t>(n) * C;
  for (int c = lane; c < C; c += 32)
    res[off + c] = from_f<E>(to_f(a[off + c]) + drop(to_f(b[off + c]), off + c, d));
  __syncwarp();
  normalise_row(out + off, mean, rstd, res + off, w, bias, n, C, eps, lane);
}

template <typename E>
__global__ void layernorm_backward_dinp_kernel(E* dinp, const E* dout, const E* inp, const float* w,
                                               const float* mean, const float* rstd, int N, int C) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (n >= N) return;
  const int lane = threadIdx.x % 32;
  const size_t off = static_cast<size_t>(n) * C;
  const E *x = inp + off, *d = dout + off;
  const float m = mean[n], s = rstd[n];
  float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float dnorm = to_f(d[c]) * w[c];
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * (to_f(x[c]) - m) * s;
  }
  dnorm_mean = warp_sum(dnorm_mean) / static_cast<float>(C);
  dnorm_norm_mean = warp_sum(dnorm_norm_mean) / static_cast<float>(C);
  E* di = dinp + off;
  for (int c = lane; c < C; c += 32) {
    const float norm = (to_f(x[c]) - m) * s;
    di[c] = from_f<E>(to_f(di[c]) + (to_f(d[c]) * w[c] - dnorm_mean - norm * dnorm_norm_mean) * s);
  }
}

// Block (32, 8): 32 columns over one chunk of rows; partial sums of dout * norm and of dout.
template <typename E>
__global__ void layernorm_backward_dwdb_kernel(float* part_w, float* part_b, const E* dout, const E* inp,
                                               const float* mean, const float* rstd, int N, int C,
                                               int rows_per_chunk) {
  __shared__ float sw[8][33], sb[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float dw = 0.0f, db = 0.0f;
  if (c < C) {
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const size_t i = static_cast<size_t>(r) * C + c;
      const float d = to_f(dout[i]);
      dw += d * (to_f(inp[i]) - mean[r]) * rstd[r];
      db += d;
    }
  }
  sw[threadIdx.y][threadIdx.x] = dw;
  sb[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float a = 0.0f, b = 0.0f;
    for (int y = 0; y < 8; y++) {
      a += sw[y][threadIdx.x];
      b += sb[y][threadIdx.x];
    }
    part_w[static_cast<size_t>(blockIdx.y) * C + c] = a;
    part_b[static_cast<size_t>(blockIdx.y) * C + c] = b;
  }
}

unsigned row_blocks(int N) { return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

template <typename E>
void layernorm_forward(E* out, float* mean, float* rstd, const E* inp, const float* w, const float* b, int N,
                       int C, float eps, cudaStream_t s) {
  if (N > 0)
    layernorm_forward_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, s>>>(out, mean, rstd, inp, w, b, N, C,
                                                                          eps);
}

template <typename E>
void residual_layernorm_forward(E* res, E* out, float* mean, float* rstd, const E* a, const E* b, DropMask d,
                                const float* w, const float* bias, int N, int C, float eps, cudaStream_t s) {
  if (N > 0)
    residual_layernorm_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, s>>>(res, out, mean, rstd, a, b, d, w,
                                                                           bias, N, C, eps);
}

template <typename E>
void layernorm_backward(E* dinp, float* dw, float* db, const E* dout, const E* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t s) {
  if (N <= 0 || C <= 0) return;
  // The parameter gradients first: they read dout, which dinp may alias.
  const int chunks = column_chunks(N);
  const int rows_per_chunk = (N + chunks - 1) / chunks;
  float* part_w = scratch;
  float* part_b = scratch + static_cast<size_t>(chunks) * C;
  layernorm_backward_dwdb_kernel<<<dim3((C + 31) / 32, chunks), dim3(32, 8), 0, s>>>(
      part_w, part_b, dout, inp, mean, rstd, N, C, rows_per_chunk);
  column_finish(dw, part_w, chunks, C, s);
  if (db) column_finish(db, part_b, chunks, C, s);
  layernorm_backward_dinp_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, s>>>(dinp, dout, inp, w, mean, rstd,
                                                                              N, C);
}

#define INSTANTIATE(E)                                                                                       \
  template void layernorm_forward(E*, float*, float*, const E*, const float*, const float*, int, int, float, \
                                  cudaStream_t);                                                             \
  template void residual_layernorm_forward(E*, E*, float*, float*, const E*, const E*, DropMask,             \
                                           const float*, const float*, int, int, float, cudaStream_t);       \
  template void layernorm_backward(E*, float*, float*, const E*, const E*, const float*, const float*,       \
                                   const float*, int, int, float*, cudaStream_t);
GPT_FOR_ACT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace gpt::cuda
