// The CUDA backend's host side: memory, the bf16 parameter shadow, the row-major tensors of
// ops.h mapped onto cuBLAS's column-major GEMMs, and the kernel launches, each for the activation
// type of the backend (bf16, or float in fp32 mode).
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

template <typename E>
E* as(Act* p) {
  return static_cast<E*>(p);
}
template <typename E>
const E* as(const Act* p) {
  return static_cast<const E*>(p);
}

// Runs the statements with E = the backend's activation element type.
#define WITH_ACT(...)       \
  do {                      \
    if (f32_) {             \
      using E = float;      \
      __VA_ARGS__;          \
    } else {                \
      using E = cuda::bf16; \
      __VA_ARGS__;          \
    }                       \
  } while (0)

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

// The epilogue of g as kernels, after the plain product wrote D (or gelu_pre, for a forward GELU).
template <typename E>
void epilogue_kernels(const cuda::Gemm& g, const float* bias, cudaStream_t s) {
  E* out = static_cast<E*>(g.D);
  E* pre = static_cast<E*>(g.gelu_pre);
  const size_t n = static_cast<size_t>(g.n) * g.m;
  if (g.dgelu) {
    cuda::gelu_backward(out, pre, out, n, s);
    return;
  }
  if (bias) cuda::add_bias(pre ? pre : out, bias, g.n, g.m, s);
  if (pre) cuda::gelu_forward(out, pre, n, s);
}

}  // namespace

CudaBackend::CudaBackend(ActType act) : f32_(act == ActType::F32) {
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
  sms_ = prop.multiProcessorCount;
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
  if (f32_) {
    to_host(host_dst, src, n * sizeof(float));
    return;
  }
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
  if (f32_) return;  // the products read the fp32 parameters themselves
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

const void* CudaBackend::weight(const float* w) const {
  if (f32_) return w;
  if (!shadow_of_ || w < shadow_of_ || w >= shadow_of_ + shadow_n_)
    fail("CUDA backend: a weight outside the parameters given to parameters_changed()");
  return shadow_ + (w - shadow_of_);
}

cuda::Gemm CudaBackend::act_gemm(const cuda::GemmShape& shape) const {
  cuda::Gemm g{shape};
  g.ab_f32 = g.d_f32 = f32_;
  return g;
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

const float* CudaBackend::master(const Weight& w, const char* what) {
  if (w.packed || !w.f32) fail("internal error: {} on cuda needs the fp32 weights", what);
  return w.f32;
}

void CudaBackend::embedding_forward(Act* out, const TokenId* ids, const Weight& wte_w, const float* wpe, int B,
                                    int T, int C) {
  const float* wte = master(wte_w, "embedding_forward");
  WITH_ACT(cuda::embedding_forward(as<E>(out), ids, wte, wpe, B, T, C, stream_));
  check_launch("embedding_forward");
}

// Deterministic, without atomics: the positions are bucketed by token on the host (host_device.h),
// and one block per distinct token sums its positions in order. The ids come from host_ids, or
// are downloaded (a stream synchronisation) when the caller has none.
void CudaBackend::embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids,
                                     const TokenId* host_ids, int B, int T, int C) {
  const size_t N = static_cast<size_t>(B) * T;
  WITH_ACT(cuda::embedding_backward_wpe(dwpe, as<E>(dout), B, T, C, stream_));
  check_launch("embedding_backward (wpe)");
  if (N == 0) return;
  if (!host_ids) {
    host_ids_.resize(N);
    to_host(host_ids_.data(), ids, N * sizeof(TokenId));
    host_ids = host_ids_.data();
  }
  cuda::bucket_tokens(host_ids, N, token_buckets_);
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
  WITH_ACT(cuda::embedding_backward_wte(dwte, as<E>(dout), buckets_, buckets_ + U, buckets_ + 2 * U + 1,
                                        static_cast<int>(U), C, stream_));
  check_launch("embedding_backward (wte)");
}

// ---- LayerNorm
// ---------------------------------------------------------------------------------------------

void CudaBackend::layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* w,
                                    const float* b, int N, int C, float eps) {
  WITH_ACT(cuda::layernorm_forward(as<E>(out), mean, rstd, as<E>(inp), w, b, N, C, eps, stream_));
  check_launch("layernorm_forward");
}

void CudaBackend::layernorm_backward(Act* dinp, float* dw, float* db, const Act* dout, const Act* inp,
                                     const float* w, const float* mean, const float* rstd, int N, int C) {
  float* scratch = column_scratch(2 * cuda::column_scratch_floats(N, C));
  WITH_ACT(cuda::layernorm_backward(as<E>(dinp), dw, db, as<E>(dout), as<E>(inp), w, mean, rstd, N, C,
                                    scratch, stream_));
  check_launch("layernorm_backward");
}

void CudaBackend::residual_layernorm_forward(Act* res, Act* out, float* mean, float* rstd, const Act* a,
                                             const Act* b, ops::Dropout drop, const float* w,
                                             const float* bias, int N, int C, float eps) {
  WITH_ACT(cuda::residual_layernorm_forward(as<E>(res), as<E>(out), mean, rstd, as<E>(a), as<E>(b),
                                            mask(drop), w, bias, N, C, eps, stream_));
  check_launch("residual_layernorm_forward");
}

// ---- linear layers
// --------------------------------------------------------------------------------------------

// With an epilogue cuBLASLt has no algorithm for, the product runs plain and the bias, GELU or GELU
// gradient follow as kernels.
void CudaBackend::gemm(cuda::Gemm g, const float* bias) {
  if (matmul_->run_lt(g)) return;
  if (!g.bias && !g.gelu_pre) {
    matmul_->run_plain(g);
    return;
  }
  const bool forward_gelu = g.gelu_pre && !g.dgelu;
  cuda::Gemm plain = g;
  plain.bias = nullptr;
  plain.gelu_pre = nullptr;
  plain.dgelu = false;
  if (forward_gelu) plain.D = g.gelu_pre;
  if (!matmul_->run_lt(plain)) matmul_->run_plain(plain);
  WITH_ACT(epilogue_kernels<E>(g, bias, stream_));
  check_launch("bias / GELU");
}

void CudaBackend::linear_forward(Act* out, const Act* inp, const Weight& w, const float* bias, int N, int IC,
                                 int OC) {
  cuda::Gemm g = act_gemm(cuda::linear_forward_shape(N, IC, OC));
  g.A = weight(master(w, "linear_forward"));
  g.B = inp;
  g.D = out;
  if (bias) g.bias = weight(bias);
  gemm(g, bias);
}

void CudaBackend::linear_gelu_forward(Act* out, Act* pre, const Act* inp, const Weight& w, const float* bias,
                                      int N, int IC, int OC) {
  cuda::Gemm g = act_gemm(cuda::linear_forward_shape(N, IC, OC));
  g.A = weight(master(w, "linear_gelu_forward"));
  g.B = inp;
  g.D = out;
  if (bias) g.bias = weight(bias);
  g.gelu_pre = pre;
  gemm(g, bias);
}

void CudaBackend::gelu_forward(Act* out, const Act* inp, size_t n) {
  WITH_ACT(cuda::gelu_forward(as<E>(out), as<E>(inp), n, stream_));
  check_launch("gelu_forward");
}

// dW is written straight in fp32: in mixed precision cuBLASLt's bf16 x bf16 -> fp32 product with
// beta = 1 accumulates into the gradient, no bf16 temporary.
void CudaBackend::linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp,
                                  const float* w, int N, int IC, int OC, bool accumulate) {
  if (dinp) {
    cuda::Gemm g = act_gemm(cuda::linear_dinp_shape(N, IC, OC));
    g.A = weight(w);
    g.B = dout;
    g.D = dinp;
    g.beta = accumulate ? 1.0f : 0.0f;
    gemm(g, nullptr);
  }
  if (dw) {
    cuda::Gemm g = act_gemm(cuda::linear_dw_shape(N, IC, OC));
    g.A = dout;
    g.B = inp;
    g.D = dw;
    g.d_f32 = true;
    g.beta = 1.0f;
    gemm(g, nullptr);
  }
  if (dbias) {
    float* scratch = column_scratch(cuda::column_scratch_floats(N, OC));
    WITH_ACT(cuda::bias_backward(dbias, as<E>(dout), N, OC, scratch, stream_));
    check_launch("linear_backward (bias)");
  }
}

void CudaBackend::gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) {
  WITH_ACT(cuda::gelu_backward(as<E>(dinp), as<E>(pre), as<E>(dout), n, stream_));
  check_launch("gelu_backward");
}

// dpre = (dout2 @ w2^T) * gelu'(pre) in one product, gelu' in cuBLASLt's DGELU epilogue (one pass
// over [N, OC] instead of a product, a read-modify-write and the GELU's re-read), then c_fc's
// gradients from dpre.
void CudaBackend::linear_gelu_backward(Act* dinp, float* dw, float* dbias, Act* dpre, const Act* dout2,
                                       const float* w2, const Act* inp, const Act* pre, const float* w, int N,
                                       int IC, int OC, int OC2, bool accumulate) {
  cuda::Gemm g = act_gemm(cuda::linear_dinp_shape(N, OC, OC2));
  g.A = weight(w2);
  g.B = dout2;
  g.D = dpre;
  g.gelu_pre = const_cast<Act*>(pre);  // read by the DGELU epilogue
  g.dgelu = true;
  gemm(g, nullptr);
  linear_backward(dinp, dw, dbias, dpre, inp, w, N, IC, OC, accumulate);
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
void check_heads(int C, int H, size_t max_shared, bool f32) {
  if (H <= 0 || C % H != 0) fail("attention: {} channels do not split into {} heads", C, H);
  const int hs = C / H;
  if (hs > cuda::kMaxHeadSize)
    fail("the CUDA attention kernels take heads of up to {} channels, not {}", cuda::kMaxHeadSize, hs);
  if (!f32 && cuda::attention_shared_bytes(hs) > max_shared)
    fail(
        "the CUDA attention kernels need {} bytes of shared memory per block for heads of {}; this GPU has "
        "{}",
        cuda::attention_shared_bytes(hs), hs, max_shared);
}
}  // namespace

void CudaBackend::attention_forward(Act* out, void* saved, void*, const Act* qkv, int B, int T, int C, int H,
                                    int band, ops::Dropout drop, bool training) {
  check_heads(C, H, max_shared_, f32_);
  float* lse = training ? static_cast<float*>(saved) : nullptr;
  WITH_ACT(check(cuda::attention_forward(as<E>(out), lse, as<E>(qkv), B, T, C, H, band, mask(drop), stream_),
                 "attention_forward"));
}

void CudaBackend::attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv,
                                     const Act* out, const void* saved, int B, int T, int C, int H, int band,
                                     ops::Dropout drop) {
  check_heads(C, H, max_shared_, f32_);
  WITH_ACT(check(
      cuda::attention_backward(as<E>(dqkv), static_cast<float*>(scratch), as<E>(dout), as<E>(qkv), as<E>(out),
                               static_cast<const float*>(saved), B, T, C, H, band, mask(drop), stream_),
      "attention_backward"));
}

// ---- KV-cache decoding
// --------------------------------------------------------------------------------------

void CudaBackend::embedding_at(Act* out, const TokenId* ids, const int32_t* pos, const Weight& wte_w,
                               const float* wpe, int N, int C) {
  const float* wte = master(wte_w, "embedding_at");
  WITH_ACT(cuda::embedding_at(as<E>(out), ids, pos, wte, wpe, N, C, stream_));
  check_launch("embedding_at");
}

// The caches hold the activation type.
KvType CudaBackend::kv_cache_type(ops::WeightType) const { return f32_ ? KvType::F32 : KvType::BF16; }

void CudaBackend::kv_cache_write(void* k_cache, void* v_cache, KvType type, const Act* qkv, const CacheIndex& at,
                                 int N, int C, int H, int n_ctx) {
  if (type != kv_cache_type(ops::WeightType::F32)) fail("internal error: a key/value cache of another type");
  WITH_ACT(cuda::kv_cache_write(as<E>(k_cache), as<E>(v_cache), as<E>(qkv), at.rows, at.pos, N, C, H, n_ctx,
                                stream_));
  check_launch("kv_cache_write");
}

// The split count depends on the rows of a call: the most any call with up to N rows needs; a
// prefill from position 0 runs the flash-attention kernel over the pass instead.
size_t CudaBackend::attention_cached_scratch_bytes(int N, int C, int H, int n_ctx) const {
  size_t most = attention_scratch_bytes(1, std::min(N, n_ctx), C, H);
  for (int n = 1; n <= N; n++) most = std::max(most, cuda::decode_scratch_bytes(n, C, H, n_ctx, sms_));
  return most;
}

void CudaBackend::attention_cached(Act* out, void* scratch, const Act* qkv, const void* k_cache,
                                   const void* v_cache, KvType type, const CacheIndex& at, int N, int C, int H,
                                   int n_ctx, int band, const ops::AttentionCapture* capture) {
  if (capture) fail("the attention view runs on the cpu backend only");
  if (type != kv_cache_type(ops::WeightType::F32)) fail("internal error: a key/value cache of another type");
  if (H <= 0 || C % H != 0 || C / H > cuda::kMaxHeadSize)
    fail("the CUDA decode attention takes heads of up to {} channels ({} channels, {} heads)",
         cuda::kMaxHeadSize, C, H);
  // One row from position 0 (a prefill's first chunk): causal attention over the pass itself.
  bool from_zero = at.host_rows && at.host_pos && N > 1;
  for (int i = 0; from_zero && i < N; i++) from_zero = at.host_rows[i] == at.host_rows[0] && at.host_pos[i] == i;
  if (from_zero) {
    attention_forward(out, nullptr, scratch, qkv, 1, N, C, H, band, ops::Dropout{}, false);
    return;
  }
  WITH_ACT(check(cuda::attention_decode(as<E>(out), static_cast<float*>(scratch), as<E>(qkv),
                                        static_cast<const E*>(k_cache), static_cast<const E*>(v_cache), at.rows,
                                        at.pos, N, C, H, n_ctx, band, sms_, stream_),
                 "attention_decode"));
}

// ---- residuals and dropout --------------------------------------------------------------------------------

void CudaBackend::residual_forward(Act* out, const Act* a, const Act* b, size_t n, ops::Dropout drop) {
  WITH_ACT(cuda::residual_forward(as<E>(out), as<E>(a), as<E>(b), n, mask(drop), stream_));
  check_launch("residual_forward");
}
void CudaBackend::dropout_forward(Act* x, size_t n, ops::Dropout drop) {
  WITH_ACT(cuda::dropout_forward(as<E>(x), n, mask(drop), stream_));
  check_launch("dropout_forward");
}
void CudaBackend::dropout_backward(Act* dinp, const Act* dout, size_t n, ops::Dropout drop) {
  WITH_ACT(cuda::dropout_backward(as<E>(dinp), as<E>(dout), n, mask(drop), stream_));
  check_launch("dropout_backward");
}

// ---- LM head and loss
// ------------------------------------------------------------------------------------------

void CudaBackend::lm_head_forward(Act* logits, const Act* x, const Weight& wte, int N, int C, int V) {
  cuda::Gemm g = act_gemm(cuda::lm_head_shape(N, C, V));
  g.A = weight(master(wte, "lm_head_forward"));
  g.B = x;
  g.D = logits;
  gemm(g, nullptr);
}

void CudaBackend::lm_head_backward(Act* dx, float* dwte, const Act* dlogits, const Act* x, const float* wte,
                                   int N, int C, int V) {
  cuda::Gemm g = act_gemm(cuda::lm_head_dx_shape(N, C, V));
  g.A = weight(wte);
  g.B = dlogits;
  g.D = dx;
  gemm(g, nullptr);
  if (!dwte) return;  // a frozen head
  cuda::Gemm d = act_gemm(cuda::lm_head_dwte_shape(N, C, V));
  d.A = x;
  d.B = dlogits;
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
  WITH_ACT(cuda::cross_entropy_forward(losses, lse, as<E>(logits), targets, N, V, stream_));
  check_launch("cross_entropy_forward");
  return reduce(losses, static_cast<size_t>(N), false);  // unscored losses are 0
}

void CudaBackend::cross_entropy_backward(Act* logits, const float* lse, const int32_t* targets, int N, int V,
                                         float scale) {
  WITH_ACT(cuda::cross_entropy_backward(as<E>(logits), lse, targets, N, V, scale, stream_));
  check_launch("cross_entropy_backward");
}

// ---- optimizer
// ----------------------------------------------------------------------------------------------------

void CudaBackend::adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                               const ops::AdamWStep& s) {
  cuda::adamw_update(param, grad, m, v, n, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.bias_correction1,
                     s.bias_correction2, s.grad_scale, stream_);
  check_launch("adamw_update");
}

double CudaBackend::sum_squares(const float* x, size_t n) { return reduce(x, n, true); }


// ---- registry
// ----------------------------------------------------------------------------------------------------

// The GPU of a local rank: its rank modulo the machine's GPU count, made the current device before
// the backend takes it.
std::unique_ptr<Backend> make_cuda_backend(ActType act, int local_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) {
    if (cudaSetDevice(gpu_for_local_rank(local_rank, count)) != cudaSuccess) cudaGetLastError();
  } else {
    cudaGetLastError();  // no GPU: the backend's constructor says so
  }
  return std::make_unique<CudaBackend>(act);
}
bool cuda_compiled_in() { return true; }

}  // namespace gpt
