// The CUDA backend's host side: memory, the bf16 parameter shadow, the row-major tensors of
// ops.h mapped onto cuBLAS's column-major GEMMs, and the kernel launches.
//
// The GEMM shapes (row-major products as cuBLAS's column-major ones) are in host_device.h.
#include "backend/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "backend/backend_registry.h"
#include "core/error.h"

namespace gpt {
namespace {

using cuda::bf16;

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's workspace (Hopper wants 32 MiB)

bf16* bf(Act* p) { return static_cast<bf16*>(p); }
const bf16* bf(const Act* p) { return static_cast<const bf16*>(p); }

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it, so the next check does not report it again
    fail("CUDA error in {}: {}", what, cudaGetErrorString(e));
  }
}

cuda::DropMask mask(ops::Dropout d) { return cuda::drop_mask(d.p, d.seed); }

// Dense bf16 tensor-core peaks from NVIDIA's data sheets, for the MFU of `gpt bench`; 0 (unknown)
// for other cards.
double bf16_peak(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H100") && has("PCIe")) return 756e12;
  if (has("H100") && has("NVL")) return 835e12;
  if (has("H100") || has("H200") || has("H800") || has("GH200")) return 989e12;
  if (has("A100") || has("A800")) return 312e12;
  return 0.0;
}

}  // namespace

CudaBackend::CudaBackend() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("no CUDA GPU found (cudaGetDeviceCount: {})", cudaGetErrorString(e));
  }
  if (count == 0) fail("no CUDA GPU found (cudaGetDeviceCount: 0 devices)");
  check(cudaGetDevice(&device_), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  // bf16 tensor cores (wmma in the attention kernels, cuBLASLt's bf16 GEMMs) start with Ampere.
  if (prop.major < 8)
    fail("the CUDA backend needs an Ampere or newer GPU (compute capability 8.0); {} has {}.{}", prop.name,
         prop.major, prop.minor);
  max_shared_ = prop.sharedMemPerBlockOptin;
  description_ = fmt::format("{}, sm_{}{}, {} SMs, {:.1f} GiB", prop.name, prop.major, prop.minor,
                             prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / (1u << 30));
  peak_bf16_ = bf16_peak(prop.name);
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaMalloc(&workspace_, kWorkspaceBytes), "cudaMalloc (workspace)");
  check(cudaMalloc(&reduce_, (cuda::reduce_partials() + 1) * sizeof(double)), "cudaMalloc (reductions)");
  matmul_ = std::make_unique<cuda::Matmul>(stream_, workspace_, kWorkspaceBytes);
}

CudaBackend::~CudaBackend() {
  // The process-wide backend goes at exit, possibly after the CUDA runtime: then everything is
  // left to the driver's teardown (destroying library handles then can crash). Other errors here
  // are ignored.
  const cudaError_t e = cudaStreamSynchronize(stream_);
  if (e == cudaErrorCudartUnloading || e == cudaErrorContextIsDestroyed) {
    (void)matmul_.release();
    return;
  }
  matmul_.reset();
  cudaFree(buckets_);
  cudaFree(columns_);
  cudaFree(shadow_);
  cudaFree(reduce_);
  cudaFree(workspace_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::check_launch(const char* what) { check(cudaGetLastError(), what); }

// ---- memory ------------------------------------------------------------------------------------------

void* CudaBackend::allocate(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, rounded);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("out of GPU memory: cannot allocate {} bytes ({})", bytes, cudaGetErrorString(e));
  }
  check(cudaMemsetAsync(p, 0, rounded, stream_), "allocate (zero)");
  return p;
}

// Memory is freed only once the stream's work that may use it is done.
void CudaBackend::free_now(void* p) {
  if (!p) return;
  cudaStreamSynchronize(stream_);
  cudaFree(p);
}

void CudaBackend::release(void* p) { free_now(p); }

// From pageable host memory the copy is staged before cudaMemcpyAsync returns, so the caller may
// reuse host_src at once.
void CudaBackend::to_device(void* dst, const void* host_src, size_t bytes) {
  if (bytes) check(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_), "to_device");
}

void CudaBackend::to_host(void* host_dst, const void* src, size_t bytes) {
  if (!bytes) return;
  check(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "to_host");
  check(cudaStreamSynchronize(stream_), "to_host (synchronize)");
}

void CudaBackend::act_to_host_f32(float* host_dst, const Act* src, size_t n) {
  std::vector<uint16_t> bits(n);
  to_host(bits.data(), src, n * sizeof(uint16_t));
  for (size_t i = 0; i < n; i++) {
    const uint32_t w = static_cast<uint32_t>(bits[i]) << 16;  // bf16 is the top half of an fp32
    std::memcpy(host_dst + i, &w, sizeof(w));
  }
}

void CudaBackend::fill_zero(void* p, size_t bytes) {
  if (bytes) check(cudaMemsetAsync(p, 0, bytes, stream_), "fill_zero");
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy");
}

void CudaBackend::synchronize() { check(cudaStreamSynchronize(stream_), "synchronize"); }

void CudaBackend::parameters_changed(const float* params, size_t n) {
  if (n > shadow_capacity_) {
    free_now(shadow_);
    shadow_ = nullptr;
    shadow_capacity_ = 0;
    check(cudaMalloc(&shadow_, n * sizeof(bf16)), "cudaMalloc (bf16 parameters)");
    shadow_capacity_ = n;
  }
  shadow_of_ = params;
  shadow_n_ = n;
  cuda::f32_to_bf16(shadow_, params, n, stream_);
  check_launch("parameters_changed");
}

const bf16* CudaBackend::shadow(const float* w) const {
  if (!shadow_of_ || w < shadow_of_ || w >= shadow_of_ + shadow_n_)
    fail("CUDA backend: a weight outside the parameters given to parameters_changed()");
  return shadow_ + (w - shadow_of_);
}

float* CudaBackend::column_scratch(size_t floats) {
  if (floats > columns_floats_) {
    free_now(columns_);
    columns_ = nullptr;
    columns_floats_ = 0;
    check(cudaMalloc(&columns_, floats * sizeof(float)), "cudaMalloc (column sums)");
    columns_floats_ = floats;
  }
  return columns_;
}

// ---- embeddings ------------------------------------------------------------------------------------------

void CudaBackend::embedding_forward(Act* out, const TokenId* ids, const float* wte, const float* wpe, int B,
                                    int T, int C) {
  cuda::embedding_forward(bf(out), ids, wte, wpe, B, T, C, stream_);
  check_launch("embedding_forward");
}

// Deterministic, without atomics: the positions are bucketed by token on the host (host_device.h),
// and one block per distinct token sums its positions in order.
void CudaBackend::embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids, int B,
                                     int T, int C) {
  const size_t N = static_cast<size_t>(B) * T;
  cuda::embedding_backward_wpe(dwpe, bf(dout), B, T, C, stream_);
  check_launch("embedding_backward (wpe)");
  if (N == 0) return;
  host_ids_.resize(N);
  to_host(host_ids_.data(), ids, N * sizeof(TokenId));
  cuda::bucket_tokens(host_ids_.data(), N, token_buckets_);
  // one upload: tokens[U], starts[U + 1], order[N]
  const auto& tb = token_buckets_;
  const size_t U = tb.tokens.size();
  host_buckets_.clear();
  host_buckets_.insert(host_buckets_.end(), tb.tokens.begin(), tb.tokens.end());
  host_buckets_.insert(host_buckets_.end(), tb.starts.begin(), tb.starts.end());
  host_buckets_.insert(host_buckets_.end(), tb.order.begin(), tb.order.end());
  if (host_buckets_.size() > buckets_capacity_) {
    free_now(buckets_);
    buckets_ = nullptr;
    buckets_capacity_ = 0;
    check(cudaMalloc(&buckets_, host_buckets_.size() * sizeof(int32_t)), "cudaMalloc (embedding buckets)");
    buckets_capacity_ = host_buckets_.size();
  }
  to_device(buckets_, host_buckets_.data(), host_buckets_.size() * sizeof(int32_t));
  cuda::embedding_backward_wte(dwte, bf(dout), buckets_, buckets_ + U, buckets_ + 2 * U + 1,
                               static_cast<int>(U), C, stream_);
  check_launch("embedding_backward (wte)");
}

// ---- LayerNorm
// ---------------------------------------------------------------------------------------------

void CudaBackend::layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* w,
                                    const float* b, int N, int C, float eps) {
  cuda::layernorm_forward(bf(out), mean, rstd, bf(inp), w, b, N, C, eps, stream_);
  check_launch("layernorm_forward");
}

void CudaBackend::layernorm_backward(Act* dinp, float* dw, float* db, const Act* dout, const Act* inp,
                                     const float* w, const float* mean, const float* rstd, int N, int C) {
  float* scratch = column_scratch(2 * cuda::column_scratch_floats(N, C));
  cuda::layernorm_backward(bf(dinp), dw, db, bf(dout), bf(inp), w, mean, rstd, N, C, scratch, stream_);
  check_launch("layernorm_backward");
}

void CudaBackend::residual_layernorm_forward(Act* res, Act* out, float* mean, float* rstd, const Act* a,
                                             const Act* b, ops::Dropout drop, const float* w,
                                             const float* bias, int N, int C, float eps) {
  cuda::residual_layernorm_forward(bf(res), bf(out), mean, rstd, bf(a), bf(b), mask(drop), w, bias, N, C, eps,
                                   stream_);
  check_launch("residual_layernorm_forward");
}

// ---- linear layers
// --------------------------------------------------------------------------------------------

// With an epilogue cuBLASLt has no algorithm for, the product runs plain and the bias and GELU
// follow as kernels.
void CudaBackend::gemm(cuda::Gemm g, const float* bias) {
  if (matmul_->run_lt(g)) return;
  if (!g.bias && !g.gelu_pre) {
    matmul_->run_plain(g);
    return;
  }
  bf16* out = static_cast<bf16*>(g.D);
  bf16* pre = g.gelu_pre;
  cuda::Gemm plain = g;
  plain.bias = nullptr;
  plain.gelu_pre = nullptr;
  if (pre) plain.D = pre;
  if (!matmul_->run_lt(plain)) matmul_->run_plain(plain);
  bf16* target = pre ? pre : out;
  if (bias) cuda::add_bias(target, bias, g.n, g.m, stream_);
  if (pre) cuda::gelu_forward(out, pre, static_cast<size_t>(g.n) * g.m, stream_);
  check_launch("bias / GELU");
}

void CudaBackend::linear_forward(Act* out, const Act* inp, const float* w, const float* bias, int N, int IC,
                                 int OC) {
  cuda::Gemm g{cuda::linear_forward_shape(N, IC, OC)};
  g.A = shadow(w);
  g.B = bf(inp);
  g.D = out;
  if (bias) g.bias = shadow(bias);
  gemm(g, bias);
}

void CudaBackend::linear_gelu_forward(Act* out, Act* pre, const Act* inp, const float* w, const float* bias,
                                      int N, int IC, int OC) {
  cuda::Gemm g{cuda::linear_forward_shape(N, IC, OC)};
  g.A = shadow(w);
  g.B = bf(inp);
  g.D = out;
  if (bias) g.bias = shadow(bias);
  g.gelu_pre = bf(pre);
  gemm(g, bias);
}

// dW is written straight in fp32: cuBLASLt's bf16 x bf16 -> fp32 product with beta = 1 accumulates
// into the gradient, no bf16 temporary.
void CudaBackend::linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp,
                                  const float* w, int N, int IC, int OC, bool accumulate) {
  if (dinp) {
    cuda::Gemm g{cuda::linear_dinp_shape(N, IC, OC)};
    g.A = shadow(w);
    g.B = bf(dout);
    g.D = dinp;
    g.beta = accumulate ? 1.0f : 0.0f;
    gemm(g, nullptr);
  }
  if (dw) {
    cuda::Gemm g{cuda::linear_dw_shape(N, IC, OC)};
    g.A = bf(dout);
    g.B = bf(inp);
    g.D = dw;
    g.d_f32 = true;
    g.beta = 1.0f;
    gemm(g, nullptr);
  }
  if (dbias) {
    cuda::bias_backward(dbias, bf(dout), N, OC, column_scratch(cuda::column_scratch_floats(N, OC)), stream_);
    check_launch("linear_backward (bias)");
  }
}

void CudaBackend::gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) {
  cuda::gelu_backward(bf(dinp), bf(pre), bf(dout), n, stream_);
  check_launch("gelu_backward");
}

// ---- attention
// -----------------------------------------------------------------------------------------------

// The forward keeps the log-sum-exp per (b, h, t); the backward's scratch holds delta = dO . O.
size_t CudaBackend::attention_saved_bytes(int B, int T, int, int H) const {
  return static_cast<size_t>(B) * H * T * sizeof(float);
}
size_t CudaBackend::attention_scratch_bytes(int B, int T, int, int H) const {
  return static_cast<size_t>(B) * H * T * sizeof(float);
}

namespace {
void check_heads(int C, int H, size_t max_shared) {
  if (H <= 0 || C % H != 0) fail("attention: {} channels do not split into {} heads", C, H);
  const int hs = C / H;
  if (hs > cuda::kMaxHeadSize)
    fail("the CUDA attention kernels take heads of up to {} channels, not {}", cuda::kMaxHeadSize, hs);
  if (cuda::attention_shared_bytes(hs) > max_shared)
    fail(
        "the CUDA attention kernels need {} bytes of shared memory per block for heads of {}; this GPU has "
        "{}",
        cuda::attention_shared_bytes(hs), hs, max_shared);
}
}  // namespace

void CudaBackend::attention_forward(Act* out, void* saved, void*, const Act* qkv, int B, int T, int C, int H,
                                    int band, ops::Dropout drop, bool training) {
  check_heads(C, H, max_shared_);
  check(cuda::attention_forward(bf(out), training ? static_cast<float*>(saved) : nullptr, bf(qkv), B, T, C, H,
                                band, mask(drop), stream_),
        "attention_forward");
}

void CudaBackend::attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv,
                                     const Act* out, const void* saved, int B, int T, int C, int H, int band,
                                     ops::Dropout drop) {
  check_heads(C, H, max_shared_);
  check(cuda::attention_backward(bf(dqkv), static_cast<float*>(scratch), bf(dout), bf(qkv), bf(out),
                                 static_cast<const float*>(saved), B, T, C, H, band, mask(drop), stream_),
        "attention_backward");
}

// ---- residuals and dropout --------------------------------------------------------------------------------

void CudaBackend::residual_forward(Act* out, const Act* a, const Act* b, size_t n, ops::Dropout drop) {
  cuda::residual_forward(bf(out), bf(a), bf(b), n, mask(drop), stream_);
  check_launch("residual_forward");
}
void CudaBackend::dropout_forward(Act* x, size_t n, ops::Dropout drop) {
  cuda::dropout_forward(bf(x), n, mask(drop), stream_);
  check_launch("dropout_forward");
}
void CudaBackend::dropout_backward(Act* dinp, const Act* dout, size_t n, ops::Dropout drop) {
  cuda::dropout_backward(bf(dinp), bf(dout), n, mask(drop), stream_);
  check_launch("dropout_backward");
}

// ---- LM head and loss
// ------------------------------------------------------------------------------------------

void CudaBackend::lm_head_forward(Act* logits, const Act* x, const float* wte, int N, int C, int V) {
  cuda::Gemm g{cuda::lm_head_shape(N, C, V)};
  g.A = shadow(wte);
  g.B = bf(x);
  g.D = logits;
  gemm(g, nullptr);
}

void CudaBackend::lm_head_backward(Act* dx, float* dwte, const Act* dlogits, const Act* x, const float* wte,
                                   int N, int C, int V) {
  cuda::Gemm g{cuda::lm_head_dx_shape(N, C, V)};
  g.A = shadow(wte);
  g.B = bf(dlogits);
  g.D = dx;
  gemm(g, nullptr);
  cuda::Gemm d{cuda::lm_head_dwte_shape(N, C, V)};
  d.A = bf(x);
  d.B = bf(dlogits);
  d.D = dwte;
  d.d_f32 = true;
  d.beta = 1.0f;
  gemm(d, nullptr);
}

double CudaBackend::reduce(const float* x, size_t n, bool square) {
  cuda::reduce_sum(reduce_ + cuda::reduce_partials(), reduce_, x, n, square, stream_);
  check_launch("reduce");
  double result = 0.0;
  to_host(&result, reduce_ + cuda::reduce_partials(), sizeof(double));
  return result;
}

double CudaBackend::cross_entropy_forward(float* losses, float* lse, const Act* logits,
                                          const int32_t* targets, int N, int V) {
  cuda::cross_entropy_forward(losses, lse, bf(logits), targets, N, V, stream_);
  check_launch("cross_entropy_forward");
  return reduce(losses, static_cast<size_t>(N), false);  // unscored losses are 0
}

void CudaBackend::cross_entropy_backward(Act* logits, const float* lse, const int32_t* targets, int N, int V,
                                         float scale) {
  cuda::cross_entropy_backward(bf(logits), lse, targets, N, V, scale, stream_);
  check_launch("cross_entropy_backward");
}

// ---- optimizer
// ----------------------------------------------------------------------------------------------------

void CudaBackend::adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                               const ops::AdamWStep& s) {
  cuda::adamw_update(param, grad, m, v, n, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.bias_correction1,
                     s.bias_correction2, stream_);
  check_launch("adamw_update");
}

double CudaBackend::sum_squares(const float* x, size_t n) { return reduce(x, n, true); }

void CudaBackend::scale(float* x, size_t n, float factor) {
  cuda::scale(x, n, factor, stream_);
  check_launch("scale");
}

// ---- registry
// ----------------------------------------------------------------------------------------------------

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }
bool cuda_compiled_in() { return true; }

}  // namespace gpt
