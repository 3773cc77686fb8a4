// Element-wise kernels, embeddings, column sums, AdamW and reductions of the CUDA backend. Each
// follows its ops/cpu/kernels.inc counterpart; activations are E (bf16 or float) and every sum is
// fp32 (double for the reductions that go to the host). Nothing here uses atomics: results are
// deterministic.
#include <algorithm>

#include "backend/cuda/common.cuh"

namespace gpt::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void f32_to_bf16_kernel(bf16* out, const float* in, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    out[i] = to_bf(in[i]);
}

template <typename E>
__global__ void embedding_forward_kernel(E* out, const uint32_t* ids, const float* wte, const float* wpe,
                                         int T, int C, size_t total) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < total;
       i += size_t{gridDim.x} * blockDim.x) {
    const size_t n = i / C;
    const int c = static_cast<int>(i % C);
    const size_t t = n % T;
    out[i] = from_f<E>(wte[static_cast<size_t>(ids[n]) * C + c] + wpe[t * C + c]);
  }
}

template <typename E>
__global__ void embedding_at_kernel(E* out, const uint32_t* ids, const int32_t* pos, const float* wte,
                                    const float* wpe, int C, size_t total) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < total;
       i += size_t{gridDim.x} * blockDim.x) {
    const size_t n = i / C;
    const int c = static_cast<int>(i % C);
    out[i] = from_f<E>(wte[static_cast<size_t>(ids[n]) * C + c] + wpe[static_cast<size_t>(pos[n]) * C + c]);
  }
}

// One thread per (t, c): the batch rows of position t summed in order.
template <typename E>
__global__ void embedding_backward_wpe_kernel(float* dwpe, const E* dout, int B, int T, int C) {
  const size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x;
  if (i >= static_cast<size_t>(T) * C) return;
  const size_t t = i / C, c = i % C;
  float sum = 0.0f;
  for (int b = 0; b < B; b++) sum += to_f(dout[(static_cast<size_t>(b) * T + t) * C + c]);
  dwpe[i] += sum;
}

// One block per distinct token: its positions (ascending) summed in order, then added once.
template <typename E>
__global__ void embedding_backward_wte_kernel(float* dwte, const E* dout, const int32_t* tokens,
                                              const int32_t* starts, const int32_t* order, int C) {
  const int u = blockIdx.x;
  const int p0 = starts[u], p1 = starts[u + 1];
  float* row = dwte + static_cast<size_t>(tokens[u]) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float sum = 0.0f;
    for (int p = p0; p < p1; p++) sum += to_f(dout[static_cast<size_t>(order[p]) * C + c]);
    row[c] += sum;
  }
}

template <typename E>
__global__ void residual_kernel(E* out, const E* a, const E* b, size_t n, DropMask d) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    out[i] = from_f<E>(to_f(a[i]) + drop(to_f(b[i]), i, d));
}

// dropout forward (in place, x == out) and backward (out = dinp, x = dout) are the same map.
template <typename E>
__global__ void dropout_kernel(E* out, const E* x, size_t n, DropMask d) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    out[i] = from_f<E>(drop(to_f(x[i]), i, d));
}

constexpr float kGeluS = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

template <typename E>
__global__ void gelu_forward_kernel(E* out, const E* inp, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const float x = to_f(inp[i]);
    out[i] = from_f<E>(0.5f * x * (1.0f + tanhf(kGeluS * (x + kGeluA * x * x * x))));
  }
}

template <typename E>
__global__ void gelu_backward_kernel(E* dinp, const E* pre, const E* dout, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const float x = to_f(pre[i]);
    const float th = tanhf(kGeluS * (x + kGeluA * x * x * x));
    const float grad =
        0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * kGeluS * (1.0f + 3.0f * kGeluA * x * x);
    dinp[i] = from_f<E>(to_f(dout[i]) * grad);
  }
}

template <typename E>
__global__ void add_bias_kernel(E* out, const float* bias, int OC, size_t total) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < total;
       i += size_t{gridDim.x} * blockDim.x)
    out[i] = from_f<E>(to_f(out[i]) + bias[i % OC]);
}

// ops::adamw_update's formula, line for line.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, size_t n, float lr,
                             float b1, float b2, float eps, float wd, float c1, float c2, float gs) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const float g = grad[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * param[i]);
  }
}

// ---- deterministic reductions: a fixed grid of partial sums, then one block sums them in order ----

constexpr int kReduceBlocks = 256;

__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

__global__ void reduce_partial_kernel(double* partials, const float* x, size_t n, bool square) {
  __shared__ double shared[kThreads];
  double sum = 0.0;
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const double v = x[i];
    sum += square ? v * v : v;
  }
  const double total = block_sum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void reduce_final_kernel(double* result, const double* partials) {
  __shared__ double shared[kReduceBlocks];
  const double total = block_sum(partials[threadIdx.x], shared);
  if (threadIdx.x == 0) *result = total;
}

// ---- column sums: block (32, 8) sums 32 columns over one chunk of rows ---------------------------------

constexpr int kColRows = 64;     // rows per chunk, at least
constexpr int kColChunks = 128;  // chunks, at most

template <typename E>
__global__ void column_partial_kernel(float* part, const E* dout, int N, int C, int rows_per_chunk) {
  __shared__ float shared[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float sum = 0.0f;
  if (c < C)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) sum += to_f(dout[static_cast<size_t>(r) * C + c]);
  shared[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.0f;
    for (int y = 0; y < 8; y++) s += shared[y][threadIdx.x];
    part[static_cast<size_t>(blockIdx.y) * C + c] = s;
  }
}

__global__ void column_finish_kernel(float* out, const float* part, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int p = 0; p < chunks; p++) s += part[static_cast<size_t>(p) * C + c];
  out[c] += s;
}

}  // namespace

void f32_to_bf16(bf16* out, const float* in, size_t n, cudaStream_t s) {
  if (n) f32_to_bf16_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, in, n);
}

template <typename E>
void embedding_forward(E* out, const uint32_t* ids, const float* wte, const float* wpe, int B, int T, int C,
                       cudaStream_t s) {
  const size_t total = static_cast<size_t>(B) * T * C;
  if (total)
    embedding_forward_kernel<<<blocks_for(total, kThreads), kThreads, 0, s>>>(out, ids, wte, wpe, T, C,
                                                                              total);
}

template <typename E>
void embedding_at(E* out, const uint32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                  int C, cudaStream_t s) {
  const size_t total = static_cast<size_t>(N) * C;
  if (total)
    embedding_at_kernel<<<blocks_for(total, kThreads), kThreads, 0, s>>>(out, ids, pos, wte, wpe, C, total);
}

template <typename E>
void embedding_backward_wpe(float* dwpe, const E* dout, int B, int T, int C, cudaStream_t s) {
  const size_t total = static_cast<size_t>(T) * C;
  if (total)
    embedding_backward_wpe_kernel<<<static_cast<unsigned>((total + kThreads - 1) / kThreads), kThreads, 0,
                                    s>>>(dwpe, dout, B, T, C);
}

template <typename E>
void embedding_backward_wte(float* dwte, const E* dout, const int32_t* tokens, const int32_t* starts,
                            const int32_t* order, int buckets, int C, cudaStream_t s) {
  if (buckets > 0)
    embedding_backward_wte_kernel<<<buckets, 128, 0, s>>>(dwte, dout, tokens, starts, order, C);
}

template <typename E>
void residual_forward(E* out, const E* a, const E* b, size_t n, DropMask d, cudaStream_t s) {
  if (n) residual_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, a, b, n, d);
}
template <typename E>
void dropout_forward(E* x, size_t n, DropMask d, cudaStream_t s) {
  if (n && d.active) dropout_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(x, x, n, d);
}
template <typename E>
void dropout_backward(E* dinp, const E* dout, size_t n, DropMask d, cudaStream_t s) {
  if (!n) return;
  if (!d.active) {
    if (dinp != dout) cudaMemcpyAsync(dinp, dout, n * sizeof(E), cudaMemcpyDeviceToDevice, s);
    return;
  }
  dropout_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(dinp, dout, n, d);
}

template <typename E>
void gelu_forward(E* out, const E* inp, size_t n, cudaStream_t s) {
  if (n) gelu_forward_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, inp, n);
}
template <typename E>
void gelu_backward(E* dinp, const E* pre, const E* dout, size_t n, cudaStream_t s) {
  if (n) gelu_backward_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(dinp, pre, dout, n);
}
template <typename E>
void add_bias(E* out, const float* bias, int N, int OC, cudaStream_t s) {
  const size_t total = static_cast<size_t>(N) * OC;
  if (total) add_bias_kernel<<<blocks_for(total, kThreads), kThreads, 0, s>>>(out, bias, OC, total);
}

void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2,
                  float grad_scale, cudaStream_t s) {
  if (n)
    adamw_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(param, grad, m, v, n, lr, beta1, beta2, eps,
                                                              weight_decay, 1.0f / bias_correction1,
                                                              1.0f / bias_correction2, grad_scale);
}

int reduce_partials() { return kReduceBlocks; }

void reduce_sum(double* result, double* partials, const float* x, size_t n, bool square, cudaStream_t s) {
  reduce_partial_kernel<<<kReduceBlocks, kThreads, 0, s>>>(partials, x, n, square);
  reduce_final_kernel<<<1, kReduceBlocks, 0, s>>>(result, partials);
}

int column_chunks(int N) { return std::max(1, std::min(kColChunks, (N + kColRows - 1) / kColRows)); }

size_t column_scratch_floats(int N, int C) { return static_cast<size_t>(column_chunks(N)) * C; }

template <typename E>
void bias_backward(float* dbias, const E* dout, int N, int C, float* scratch, cudaStream_t s) {
  if (N <= 0 || C <= 0) return;
  const int chunks = column_chunks(N);
  const int rows_per_chunk = (N + chunks - 1) / chunks;
  column_partial_kernel<<<dim3((C + 31) / 32, chunks), dim3(32, 8), 0, s>>>(scratch, dout, N, C,
                                                                            rows_per_chunk);
  column_finish(dbias, scratch, chunks, C, s);
}

void column_finish(float* out, const float* scratch, int chunks, int C, cudaStream_t s) {
  if (C > 0) column_finish_kernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, s>>>(out, scratch, chunks, C);
}

#define INSTANTIATE(E)                                                                                   \
  template void embedding_forward(E*, const uint32_t*, const float*, const float*, int, int, int,        \
                                  cudaStream_t);                                                         \
  template void embedding_at(E*, const uint32_t*, const int32_t*, const float*, const float*, int, int,  \
                             cudaStream_t);                                                              \
  template void embedding_backward_wpe(float*, const E*, int, int, int, cudaStream_t);                   \
  template void embedding_backward_wte(float*, const E*, const int32_t*, const int32_t*, const int32_t*, \
                                       int, int, cudaStream_t);                                          \
  template void residual_forward(E*, const E*, const E*, size_t, DropMask, cudaStream_t);                \
  template void dropout_forward(E*, size_t, DropMask, cudaStream_t);                                     \
  template void dropout_backward(E*, const E*, size_t, DropMask, cudaStream_t);                          \
  template void gelu_forward(E*, const E*, size_t, cudaStream_t);                                        \
  template void gelu_backward(E*, const E*, const E*, size_t, cudaStream_t);                             \
  template void add_bias(E*, const float*, int, int, cudaStream_t);                                      \
  template void bias_backward(float*, const E*, int, int, float*, cudaStream_t);
GPT_FOR_ACT_TYPES(INSTANTIATE)
#undef INSTANTIATE

}  // namespace gpt::cuda
