// The CUDA backend against the CPU backend: every operation on random inputs, then a whole model
// (forward loss, logits and every gradient), in both modes: "cuda" (bf16 activations, mixed
// precision) and "cuda-fp32" (fp32 activations and products). Inputs are rounded to bf16 first, so
// both backends start from the same values and the comparison measures the GPU's arithmetic only.
//
// Tolerances (max |gpu - cpu| over the tensor, relative to max |cpu|): in bf16 mode 2e-2 for bf16
// outputs and for fp32 results computed from bf16 activations (one bf16 rounding is 4e-3); in fp32
// mode 1e-4 (the bound for the logits); 1e-5 for pure fp32 operations (AdamW, sums,
// scale); exact for dropout masks, which must be the same elements.
//
// Without a GPU (or in a build without CUDA) the CudaBackend tests skip with "no CUDA GPU: <reason>";
// CudaHost checks, on any machine, the parts of the backend written in plain C++ (the dropout hash,
// the GEMM shapes, the embedding buckets), and CudaBuildInfo reports what was built.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/backend_registry.h"
#include "backend/cuda/host_device.h"
#include "core/error.h"
#include "grad_check.h"
#include "model/gpt.h"
#include "ops/ops.h"

#ifndef GPT_CUDA_COMPILED
#define GPT_CUDA_COMPILED 0
#endif
#ifndef GPT_CUDA_ARCHS
#define GPT_CUDA_ARCHS ""
#endif

namespace gpt {
namespace {

using test::randn;

// A CUDA backend ("cuda" or "cuda-fp32"), or null and why not.
Backend* cuda_or_null(std::string& why, const char* name = "cuda") {
  if (!cuda_backend_built()) {
    why = "this build has no CUDA backend (the CUDA toolkit was not found at build time)";
    return nullptr;
  }
  try {
    return &backend_for(name);
  } catch (const Error& e) {
    why = e.what();
    return nullptr;
  }
}

// Every CudaBackend test runs in both modes (Mode/CudaBackend.NAME/bf16 and .../fp32).
class CudaBackend : public testing::TestWithParam<const char*> {
 protected:
  bool fp32() const { return std::string(GetParam()) == "cuda-fp32"; }
  // Results computed from activations: bf16 rounds once by 4e-3; fp32 must agree to 1e-4.
  double tol() const { return fp32() ? 1e-4 : 2e-2; }
};

#define REQUIRE_CUDA(var)                                       \
  std::string why_##var;                                        \
  Backend* var##_ptr = cuda_or_null(why_##var, GetParam());     \
  if (!var##_ptr) GTEST_SKIP() << "no CUDA GPU: " << why_##var; \
  Backend& var = *var##_ptr

// bf16 round to nearest even, as __float2bfloat16 does.
float bf16_round(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&x, &b, 4);
  return x;
}
std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = bf16_round(x);
  return v;
}
std::vector<float> rand_bf16(size_t n, uint64_t seed, float scale = 1.0f) {
  return rounded(randn(n, seed, scale));
}

// Device memory for one test, released at its end.
class Dev {
 public:
  explicit Dev(Backend& be) : be_(be) {}
  ~Dev() {
    be_.synchronize();
    for (void* p : ptrs_) be_.release(p);
  }
  void* raw(size_t bytes) {
    ptrs_.push_back(be_.allocate(bytes));
    return ptrs_.back();
  }
  float* f32(const std::vector<float>& v) {
    auto* p = static_cast<float*>(raw(v.size() * sizeof(float)));
    be_.to_device(p, v.data(), v.size() * sizeof(float));
    return p;
  }
  template <typename T>
  T* ints(const std::vector<T>& v) {
    auto* p = static_cast<T*>(raw(v.size() * sizeof(T)));
    be_.to_device(p, v.data(), v.size() * sizeof(T));
    return p;
  }
  // Activations of the backend's type: bf16 (the values must be bf16-representable to be exact) or
  // fp32.
  Act* act(const std::vector<float>& v) {
    if (be_.act_type() == ActType::F32) return f32(v);
    std::vector<uint16_t> bits(v.size());
    for (size_t i = 0; i < v.size(); i++) {
      uint32_t b;
      const float r = bf16_round(v[i]);
      std::memcpy(&b, &r, 4);
      bits[i] = static_cast<uint16_t>(b >> 16);
    }
    Act* p = raw(bits.size() * 2);
    be_.to_device(p, bits.data(), bits.size() * 2);
    return p;
  }
  Act* act_zero(size_t n) { return raw(n * act_size(be_.act_type())); }
  std::vector<float> read_act(const Act* p, size_t n) {
    std::vector<float> v(n);
    be_.act_to_host_f32(v.data(), p, n);
    return v;
  }
  std::vector<float> read(const float* p, size_t n) {
    std::vector<float> v(n);
    be_.to_host(v.data(), p, n * sizeof(float));
    return v;
  }

 private:
  Backend& be_;
  std::vector<void*> ptrs_;
};

// The weights of one test in one parameter block, as the model keeps them: the GEMMs read the
// backend's bf16 copy of exactly this block.
struct Params {
  std::vector<float> host;
  size_t add(const std::vector<float>& v) {
    const size_t off = host.size();
    host.insert(host.end(), v.begin(), v.end());
    host.resize((host.size() + 63) / 64 * 64, 0.0f);  // keep every tensor 256-byte aligned
    return off;
  }
  float* upload(Dev& dev, Backend& be) {
    float* p = dev.f32(host);
    be.parameters_changed(p, host.size());
    return p;
  }
};

void expect_close(const char* what, const std::vector<float>& gpu, const std::vector<float>& cpu,
                  double tol) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  double ref = 0.0, err = 0.0;
  size_t worst = 0;
  for (size_t i = 0; i < cpu.size(); i++) {
    ref = std::max(ref, static_cast<double>(std::fabs(cpu[i])));
    const double d = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
    if (!(d <= err)) {  // NaN counts as the worst
      err = d;
      worst = i;
    }
  }
  EXPECT_GT(ref, 0.0) << what << ": the reference is all zero, so the check proves nothing";
  EXPECT_LE(err, tol * ref) << what << ": max error " << err << " at " << worst << " (gpu " << gpu[worst]
                            << ", cpu " << cpu[worst] << "), max |cpu| " << ref << ", relative " << err / ref;
}

ops::Dropout dropout(float p, uint32_t seed) { return ops::Dropout{p, seed}; }

// ---- build information ----------------------------------------------------------------------------

TEST(CudaBuildInfo, MatchesCMake) {
  std::printf("CUDA backend compiled in: %s; CUDA architectures (sm_XX): %s\n",
              GPT_CUDA_COMPILED ? "yes" : "no", GPT_CUDA_COMPILED ? GPT_CUDA_ARCHS : "none");
  EXPECT_EQ(cuda_backend_built(), GPT_CUDA_COMPILED != 0);
  std::string why;
  if (Backend* be = cuda_or_null(why))
    std::printf("CUDA device: present (%s backend)\n", std::string(be->name()).c_str());
  else
    std::printf("CUDA device: none (%s)\n", why.c_str());
  if (!cuda_backend_built()) {
    try {
      backend_for("cuda");
      ADD_FAILURE() << "a build without CUDA made a CUDA backend";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA backend"), std::string::npos) << e.what();
    }
  }
}

// ---- the host-side pieces, on any machine ------------------------------------------------------------

TEST(CudaHost, DropoutHashIsTheCpus) {
  const size_t n = 20000;
  for (float p : {0.1f, 0.5f, 0.9f}) {
    const uint32_t seed = ops::dropout_seed(77, 3, 2);
    std::vector<float> x(n, 1.0f);
    ops::dropout_forward(x.data(), n, ops::Dropout{p, seed});
    const cuda::DropMask m = cuda::drop_mask(p, seed);
    ASSERT_TRUE(m.active);
    for (size_t i = 0; i < n; i++) {
      ASSERT_EQ(cuda::keep(seed, i, m.threshold), x[i] != 0.0f) << "p " << p << " element " << i;
      if (x[i] != 0.0f) {
        ASSERT_EQ(x[i], m.scale);
      }
    }
  }
  EXPECT_FALSE(cuda::drop_mask(0.0f, 1).active);
}

// Column-major D = op(A) op(B) + beta D, the way cuBLAS reads a GemmShape.
void colmajor_gemm(const cuda::GemmShape& s, const float* A, const float* B, float* D, float beta) {
  for (int j = 0; j < s.n; j++)
    for (int i = 0; i < s.m; i++) {
      double sum = 0.0;
      for (int l = 0; l < s.k; l++) {
        const float a = s.ta ? A[static_cast<size_t>(i) * s.lda + l] : A[static_cast<size_t>(l) * s.lda + i];
        const float b = s.tb ? B[static_cast<size_t>(l) * s.ldb + j] : B[static_cast<size_t>(j) * s.ldb + l];
        sum += static_cast<double>(a) * b;
      }
      float& d = D[static_cast<size_t>(j) * s.ldd + i];
      d = static_cast<float>(sum + beta * d);
    }
}

// The row-major products of ops.h, through the shapes the backend hands cuBLAS.
TEST(CudaHost, GemmShapesReproduceTheRowMajorProducts) {
  const int N = 7, IC = 5, OC = 9, C = 6, V = 11;
  const auto inp = randn(N * IC, 1), w = randn(IC * OC, 2), dout = randn(N * OC, 3);
  std::vector<float> ref(N * OC), got(N * OC);
  ops::linear_forward(ref.data(), inp.data(), w.data(), nullptr, N, IC, OC);
  colmajor_gemm(cuda::linear_forward_shape(N, IC, OC), w.data(), inp.data(), got.data(), 0.0f);
  expect_close("linear", got, ref, 1e-5);

  std::vector<float> dinp(N * IC), gdinp(N * IC), dw = randn(IC * OC, 4), gdw = dw;
  ops::linear_backward(dinp.data(), dw.data(), nullptr, dout.data(), inp.data(), w.data(), N, IC, OC, false);
  colmajor_gemm(cuda::linear_dinp_shape(N, IC, OC), w.data(), dout.data(), gdinp.data(), 0.0f);
  colmajor_gemm(cuda::linear_dw_shape(N, IC, OC), dout.data(), inp.data(), gdw.data(), 1.0f);
  expect_close("dinp", gdinp, dinp, 1e-5);
  expect_close("dw", gdw, dw, 1e-5);

  const auto x = randn(N * C, 5), wte = randn(V * C, 6), dlogits = randn(N * V, 7);
  std::vector<float> logits(N * V), glogits(N * V), dx(N * C), gdx(N * C), dwte = randn(V * C, 8),
                                                                           gdwte = dwte;
  ops::lm_head_forward(logits.data(), x.data(), wte.data(), N, C, V);
  colmajor_gemm(cuda::lm_head_shape(N, C, V), wte.data(), x.data(), glogits.data(), 0.0f);
  expect_close("logits", glogits, logits, 1e-5);
  ops::lm_head_backward(dx.data(), dwte.data(), dlogits.data(), x.data(), wte.data(), N, C, V);
  colmajor_gemm(cuda::lm_head_dx_shape(N, C, V), wte.data(), dlogits.data(), gdx.data(), 0.0f);
  colmajor_gemm(cuda::lm_head_dwte_shape(N, C, V), x.data(), dlogits.data(), gdwte.data(), 1.0f);
  expect_close("dx", gdx, dx, 1e-5);
  expect_close("dwte", gdwte, dwte, 1e-5);
}

TEST(CudaHost, TokenBucketsCoverEveryPositionInOrder) {
  const std::vector<uint32_t> ids = {5, 2, 5, 9, 2, 2, 0, 5, 9};
  cuda::TokenBuckets b;
  cuda::bucket_tokens(ids.data(), ids.size(), b);
  EXPECT_EQ(b.tokens, (std::vector<int32_t>{0, 2, 5, 9}));
  EXPECT_EQ(b.starts, (std::vector<int32_t>{0, 1, 4, 7, 9}));
  EXPECT_EQ(b.order, (std::vector<int32_t>{6, 1, 4, 5, 0, 2, 7, 3, 8}));  // ascending within a token
  cuda::bucket_tokens(ids.data(), 0, b);
  EXPECT_TRUE(b.tokens.empty());
  EXPECT_EQ(b.starts, std::vector<int32_t>{0});
}

// The run-time loading of cuBLAS and cuBLASLt: their sonames and every symbol the backend calls.
TEST(CudaHost, CublasLibrariesLoad) {
#if GPT_CUDA_COMPILED
  EXPECT_NO_THROW(cuda::load_cublas());
#else
  GTEST_SKIP()
      << "no CUDA GPU: this build has no CUDA backend (the CUDA toolkit was not found at build time)";
#endif
}

// ---- memory ------------------------------------------------------------------------------------------

TEST_P(CudaBackend, MemoryRoundTrips) {
  REQUIRE_CUDA(gpu);
  EXPECT_EQ(gpu.name(), GetParam());
  EXPECT_EQ(gpu.act_type(), fp32() ? ActType::F32 : ActType::BF16);
  EXPECT_FALSE(gpu.host_memory());
  Dev dev(gpu);
  const size_t n = 1000;
  auto* z = static_cast<float*>(dev.raw(n * sizeof(float)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z) % 256, 0u);
  EXPECT_EQ(dev.read(z, n), std::vector<float>(n, 0.0f));  // allocate zeroes
  const auto v = randn(n, 1);
  float* a = dev.f32(v);
  EXPECT_EQ(dev.read(a, n), v);
  gpu.copy(z, a, n * sizeof(float));
  EXPECT_EQ(dev.read(z, n), v);
  gpu.fill_zero(z, n * sizeof(float));
  EXPECT_EQ(dev.read(z, n), std::vector<float>(n, 0.0f));
  const auto r = rand_bf16(n, 2);
  EXPECT_EQ(dev.read_act(dev.act(r), n), r);  // bf16-representable values survive exactly
}

// ---- embeddings ---------------------------------------------------------------------------------------

TEST_P(CudaBackend, Embedding) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const int B = 3, T = 17, C = 72, V = 11, N = B * T;
  std::vector<TokenId> ids(N);
  for (int i = 0; i < N; i++) ids[i] = static_cast<TokenId>((i * 7 + i / 5) % V);  // repeats
  const auto wte = randn(V * C, 1), wpe = randn(T * C, 2);
  std::vector<float> out(N * C);
  cpu.embedding_forward(out.data(), ids.data(), wte.data(), wpe.data(), B, T, C);
  Act* gout = dev.act_zero(N * C);
  gpu.embedding_forward(gout, dev.ints(ids), dev.f32(wte), dev.f32(wpe), B, T, C);
  expect_close("embedding out", dev.read_act(gout, N * C), out, tol());

  const auto dout = rand_bf16(N * C, 3);
  auto dwte = randn(V * C, 4), dwpe = randn(T * C, 5);  // the backward adds to these
  float* gdwte = dev.f32(dwte);
  float* gdwpe = dev.f32(dwpe);
  float* gdwte2 = dev.f32(dwte);
  float* gdwpe2 = dev.f32(dwpe);
  cpu.embedding_backward(dwte.data(), dwpe.data(), dout.data(), ids.data(), ids.data(), B, T, C);
  Act* gdout = dev.act(dout);
  TokenId* gids = dev.ints(ids);
  gpu.embedding_backward(gdwte, gdwpe, gdout, gids, nullptr, B, T, C);  // ids downloaded
  expect_close("dwte", dev.read(gdwte, V * C), dwte, 1e-5);
  expect_close("dwpe", dev.read(gdwpe, T * C), dwpe, 1e-5);
  // given the ids in host memory too: the same sums, in the same order
  gpu.embedding_backward(gdwte2, gdwpe2, gdout, gids, ids.data(), B, T, C);
  EXPECT_EQ(dev.read(gdwte2, V * C), dev.read(gdwte, V * C));
  EXPECT_EQ(dev.read(gdwpe2, T * C), dev.read(gdwpe, T * C));
  // embeddings at positions
  std::vector<int32_t> pos(N);
  for (int i = 0; i < N; i++) pos[i] = (i * 5) % T;
  std::vector<float> at(N * C);
  cpu.embedding_at(at.data(), ids.data(), pos.data(), wte.data(), wpe.data(), N, C);
  gpu.embedding_at(gout, gids, dev.ints(pos), dev.f32(wte), dev.f32(wpe), N, C);
  expect_close("embedding_at", dev.read_act(gout, N * C), at, tol());
}

// ---- LayerNorm -------------------------------------------------------------------------------------------

TEST_P(CudaBackend, LayerNorm) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  for (bool bias : {true, false}) {
    SCOPED_TRACE(bias ? "with bias" : "without bias");
    Dev dev(gpu);
    const int N = 37, C = 200;
    auto x = rand_bf16(N * C, 1, 2.0f);
    for (float& v : x) v = bf16_round(v + 3.0f);  // a mean far from 0
    const auto w = randn(C, 2), b = randn(C, 3);
    std::vector<float> out(N * C), mean(N), rstd(N);
    cpu.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bias ? b.data() : nullptr,
                          N, C, 1e-5f);
    Act* gx = dev.act(x);
    Act* gout = dev.act_zero(N * C);
    float* gw = dev.f32(w);
    float* gmean = dev.f32(std::vector<float>(N));
    float* grstd = dev.f32(std::vector<float>(N));
    gpu.layernorm_forward(gout, gmean, grstd, gx, gw, bias ? dev.f32(b) : nullptr, N, C, 1e-5f);
    expect_close("out", dev.read_act(gout, N * C), out, tol());
    expect_close("mean", dev.read(gmean, N), mean, 1e-5);
    expect_close("rstd", dev.read(grstd, N), rstd, 1e-4);

    const auto dout = rand_bf16(N * C, 4);
    auto dinp = rand_bf16(N * C, 5);  // dinp, dw, db are added to
    auto dw = randn(C, 6), db = randn(C, 7);
    Act* gdinp = dev.act(dinp);
    float* gdw = dev.f32(dw);
    float* gdb = dev.f32(db);
    cpu.layernorm_backward(dinp.data(), dw.data(), bias ? db.data() : nullptr, dout.data(), x.data(),
                           w.data(), mean.data(), rstd.data(), N, C);
    gpu.layernorm_backward(gdinp, gdw, bias ? gdb : nullptr, dev.act(dout), gx, gw, gmean, grstd, N, C);
    expect_close("dinp", dev.read_act(gdinp, N * C), dinp, tol());
    expect_close("dw", dev.read(gdw, C), dw, tol());
    expect_close("db", dev.read(gdb, C), db, tol());
  }
}

TEST_P(CudaBackend, ResidualLayerNorm) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  for (float p : {0.0f, 0.25f}) {
    SCOPED_TRACE(p);
    Dev dev(gpu);
    const int N = 29, C = 96;
    const auto a = rand_bf16(N * C, 1), b = rand_bf16(N * C, 2), w = randn(C, 3), bias = randn(C, 4);
    const auto drop = dropout(p, 1234567u);
    std::vector<float> res(N * C), out(N * C), mean(N), rstd(N);
    cpu.residual_layernorm_forward(res.data(), out.data(), mean.data(), rstd.data(), a.data(), b.data(), drop,
                                   w.data(), bias.data(), N, C, 1e-5f);
    Act* gres = dev.act_zero(N * C);
    Act* gout = dev.act_zero(N * C);
    float* gmean = dev.f32(std::vector<float>(N));
    float* grstd = dev.f32(std::vector<float>(N));
    gpu.residual_layernorm_forward(gres, gout, gmean, grstd, dev.act(a), dev.act(b), drop, dev.f32(w),
                                   dev.f32(bias), N, C, 1e-5f);
    expect_close("res", dev.read_act(gres, N * C), res, tol());
    expect_close("out", dev.read_act(gout, N * C), out, tol());
    expect_close("mean", dev.read(gmean, N), mean, tol());
    expect_close("rstd", dev.read(grstd, N), rstd, tol());
  }
}

// ---- linear layers ------------------------------------------------------------------------------------

// Shapes the cuBLASLt epilogues take (OC % 8 == 0) and one they do not (the kernel fallback).
TEST_P(CudaBackend, Linear) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  struct Shape {
    int N, IC, OC;
  };
  for (Shape s : {Shape{48, 64, 192}, Shape{13, 24, 36}}) {
    SCOPED_TRACE(testing::Message() << s.N << "x" << s.IC << "x" << s.OC);
    const int N = s.N, IC = s.IC, OC = s.OC;
    Dev dev(gpu);
    Params P;
    const auto w = rand_bf16(IC * OC, 1, 0.2f), b = rand_bf16(OC, 2);
    const size_t ow = P.add(w), ob = P.add(b);
    float* params = P.upload(dev, gpu);
    const auto x = rand_bf16(N * IC, 3);
    Act* gx = dev.act(x);

    std::vector<float> out(N * OC);
    cpu.linear_forward(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
    Act* gout = dev.act_zero(N * OC);
    gpu.linear_forward(gout, gx, params + ow, params + ob, N, IC, OC);
    expect_close("linear out", dev.read_act(gout, N * OC), out, tol());
    std::vector<float> nobias(N * OC);
    cpu.linear_forward(nobias.data(), x.data(), w.data(), nullptr, N, IC, OC);
    gpu.linear_forward(gout, gx, params + ow, nullptr, N, IC, OC);
    expect_close("linear out (no bias)", dev.read_act(gout, N * OC), nobias, tol());

    std::vector<float> gelu(N * OC), pre(N * OC);
    cpu.linear_gelu_forward(gelu.data(), pre.data(), x.data(), w.data(), b.data(), N, IC, OC);
    Act* ggelu = dev.act_zero(N * OC);
    Act* gpre = dev.act_zero(N * OC);
    gpu.linear_gelu_forward(ggelu, gpre, gx, params + ow, params + ob, N, IC, OC);
    expect_close("gelu out", dev.read_act(ggelu, N * OC), gelu, tol());
    expect_close("gelu pre", dev.read_act(gpre, N * OC), pre, tol());

    // backward, accumulating into dinp, dw, dbias
    const auto dout = rand_bf16(N * OC, 4);
    auto dinp = rand_bf16(N * IC, 5);
    auto dw = randn(IC * OC, 6), db = randn(OC, 7);
    Act* gdinp = dev.act(dinp);
    float* gdw = dev.f32(dw);
    float* gdb = dev.f32(db);
    cpu.linear_backward(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, IC, OC, true);
    gpu.linear_backward(gdinp, gdw, gdb, dev.act(dout), gx, params + ow, N, IC, OC, true);
    expect_close("dinp (accumulated)", dev.read_act(gdinp, N * IC), dinp, tol());
    expect_close("dw", dev.read(gdw, IC * OC), dw, tol());
    expect_close("dbias", dev.read(gdb, OC), db, tol());
    // overwrite, no parameter gradients
    std::vector<float> dinp2(N * IC);
    cpu.linear_backward(dinp2.data(), nullptr, nullptr, dout.data(), x.data(), w.data(), N, IC, OC, false);
    gpu.linear_backward(gdinp, nullptr, nullptr, dev.act(dout), gx, params + ow, N, IC, OC, false);
    expect_close("dinp (overwritten)", dev.read_act(gdinp, N * IC), dinp2, tol());
  }
}

// The MLP's fused backward: the GELU gradient in the epilogue of c_proj's dinp product (cuBLASLt's
// DGELU where OC % 8 == 0; the kernel fallback otherwise), then c_fc's gradients.
TEST_P(CudaBackend, LinearGeluBackward) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  struct Shape {
    int N, IC, OC, OC2;
  };
  for (Shape s : {Shape{48, 64, 256, 64}, Shape{13, 24, 36, 20}}) {
    SCOPED_TRACE(testing::Message() << s.N << "x" << s.IC << "x" << s.OC << "x" << s.OC2);
    const int N = s.N, IC = s.IC, OC = s.OC, OC2 = s.OC2;
    Dev dev(gpu);
    Params P;
    const auto w = rand_bf16(IC * OC, 1, 0.2f), w2 = rand_bf16(OC * OC2, 2, 0.2f);
    const size_t ow = P.add(w), ow2 = P.add(w2);
    float* params = P.upload(dev, gpu);
    const auto x = rand_bf16(N * IC, 3), pre = rand_bf16(N * OC, 4, 2.0f), dout2 = rand_bf16(N * OC2, 5);
    for (bool acc : {false, true}) {
      auto dinp = rand_bf16(N * IC, 6);
      auto dw = randn(IC * OC, 7), db = randn(OC, 8);
      Act* gdinp = dev.act(dinp);
      float* gdw = dev.f32(dw);
      float* gdb = dev.f32(db);
      Act* gdpre = dev.act_zero(N * OC);
      std::vector<float> dpre(N * OC);
      cpu.linear_gelu_backward(dinp.data(), dw.data(), db.data(), dpre.data(), dout2.data(), w2.data(),
                               x.data(), pre.data(), w.data(), N, IC, OC, OC2, acc);
      gpu.linear_gelu_backward(gdinp, gdw, gdb, gdpre, dev.act(dout2), params + ow2, dev.act(x), dev.act(pre),
                               params + ow, N, IC, OC, OC2, acc);
      expect_close("dpre", dev.read_act(gdpre, N * OC), dpre, tol());
      expect_close("dinp", dev.read_act(gdinp, N * IC), dinp, tol());
      expect_close("dw", dev.read(gdw, IC * OC), dw, tol());
      expect_close("dbias", dev.read(gdb, OC), db, tol());
    }
  }
}

TEST_P(CudaBackend, GeluBackward) {
  REQUIRE_CUDA(gpu);
  Dev dev(gpu);
  const size_t n = 5000;
  const auto pre = rand_bf16(n, 1, 2.0f), dout = rand_bf16(n, 2);
  std::vector<float> dinp(n);
  cpu_backend().gelu_backward(dinp.data(), pre.data(), dout.data(), n);
  Act* gd = dev.act(dout);
  gpu.gelu_backward(gd, dev.act(pre), gd, n);  // in place, as the model calls it
  expect_close("gelu dinp", dev.read_act(gd, n), dinp, tol());
}

// ---- attention ------------------------------------------------------------------------------------------

struct AttnCase {
  int B, T, C, H, band;
  float p;
};

void check_attention(Backend& gpu, double tol, const AttnCase& k) {
  SCOPED_TRACE(testing::Message() << "B " << k.B << " T " << k.T << " C " << k.C << " H " << k.H << " band "
                                  << k.band << " dropout " << k.p);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const int B = k.B, T = k.T, C = k.C, H = k.H;
  const size_t N = static_cast<size_t>(B) * T;
  const auto qkv = rand_bf16(N * 3 * C, 1);
  const auto drop = dropout(k.p, 987654321u);
  std::vector<float> out(N * C), saved(cpu.attention_saved_bytes(B, T, C, H) / sizeof(float)),
      scratch(cpu.attention_scratch_bytes(B, T, C, H) / sizeof(float) + 1);
  cpu.attention_forward(out.data(), saved.data(), scratch.data(), qkv.data(), B, T, C, H, k.band, drop, true);

  Act* gqkv = dev.act(qkv);
  Act* gout = dev.act_zero(N * C);
  void* gsaved = dev.raw(gpu.attention_saved_bytes(B, T, C, H));
  void* gscratch = dev.raw(gpu.attention_scratch_bytes(B, T, C, H));
  gpu.attention_forward(gout, gsaved, gscratch, gqkv, B, T, C, H, k.band, drop, true);
  expect_close("attention out", dev.read_act(gout, N * C), out, tol);
  // inference (no saved state) gives the same output
  Act* gout2 = dev.act_zero(N * C);
  gpu.attention_forward(gout2, nullptr, gscratch, gqkv, B, T, C, H, k.band, drop, false);
  EXPECT_EQ(dev.read_act(gout2, N * C), dev.read_act(gout, N * C));

  const auto dout = rand_bf16(N * C, 2);
  std::vector<float> dqkv(N * 3 * C);
  cpu.attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), out.data(), saved.data(), B, T,
                         C, H, k.band, drop);
  Act* gdqkv = dev.act(rand_bf16(N * 3 * C, 3));  // overwritten
  gpu.attention_backward(gdqkv, gscratch, dev.act(dout), gqkv, gout, gsaved, B, T, C, H, k.band, drop);
  const auto g = dev.read_act(gdqkv, N * 3 * C);
  // dq, dk and dv separately: their scales differ
  for (int part = 0; part < 3; part++) {
    std::vector<float> a, c;
    for (size_t n = 0; n < N; n++)
      for (int j = 0; j < C; j++) {
        a.push_back(g[n * 3 * C + part * C + j]);
        c.push_back(dqkv[n * 3 * C + part * C + j]);
      }
    expect_close(part == 0 ? "dq" : part == 1 ? "dk" : "dv", a, c, tol);
  }
}

TEST_P(CudaBackend, AttentionDense) {
  REQUIRE_CUDA(gpu);
  check_attention(gpu, tol(), {2, 150, 64, 4, 0, 0.0f});  // head size 16, three key tiles, a partial one
  check_attention(gpu, tol(), {1, 64, 128, 2, 0, 0.0f});  // head size 64, one full tile
  check_attention(gpu, tol(), {2, 33, 128, 1, 0, 0.0f});  // head size 128
}

TEST_P(CudaBackend, AttentionBanded) {
  REQUIRE_CUDA(gpu);
  check_attention(gpu, tol(), {2, 150, 64, 4, 8, 0.0f});
  check_attention(gpu, tol(), {1, 200, 128, 2, 70, 0.0f});  // a band wider than a tile
}

TEST_P(CudaBackend, AttentionOddHeadSizes) {
  REQUIRE_CUDA(gpu);
  check_attention(gpu, tol(), {2, 45, 48, 2, 0, 0.0f});  // head size 24: padded to 32, 16-byte loads
  check_attention(gpu, tol(), {2, 45, 40, 2, 5, 0.0f});  // head size 20: padded, element loads
}

// The probabilities are dropped with the CPU's hash: were the masks different, the outputs would
// differ by far more than the tolerance.
TEST_P(CudaBackend, AttentionDropout) {
  REQUIRE_CUDA(gpu);
  check_attention(gpu, tol(), {2, 100, 64, 4, 0, 0.3f});
  check_attention(gpu, tol(), {1, 100, 64, 2, 20, 0.3f});
}

// ---- KV-cache decoding ------------------------------------------------------------------------------------

struct DecodeCase {
  int N, n_ctx, C, H, band;
};

// Random caches (every slot written, so unwritten positions would show), queries at random positions
// of distinct rows; the GPU's split-K decode attention against the CPU's plain loops.
void check_decode(Backend& gpu, double tol, const DecodeCase& k) {
  SCOPED_TRACE(testing::Message() << "N " << k.N << " n_ctx " << k.n_ctx << " C " << k.C << " H " << k.H
                                  << " band " << k.band);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const int N = k.N, C = k.C, H = k.H, R = N + 2;  // more cache rows than queries
  const size_t cache = static_cast<size_t>(R) * k.n_ctx * C;
  auto K = rand_bf16(cache, 1), V = rand_bf16(cache, 2);
  const auto qkv = rand_bf16(static_cast<size_t>(N) * 3 * C, 3, 2.0f);
  std::vector<int32_t> rows(N), pos(N);
  std::mt19937 g(4);
  for (int i = 0; i < N; i++) {
    rows[i] = (i * 7 + 1) % R;  // distinct: no N + 2 of the cases is a multiple of 7
    pos[i] = i == 0 ? k.n_ctx - 1 : static_cast<int32_t>(g() % k.n_ctx);
  }
  Act* gK = dev.act(K);
  Act* gV = dev.act(V);
  Act* gqkv = dev.act(qkv);
  int32_t* grows = dev.ints(rows);
  int32_t* gpos = dev.ints(pos);
  const CacheIndex host_at{rows.data(), pos.data(), rows.data(), pos.data()};
  const CacheIndex dev_at{grows, gpos, rows.data(), pos.data()};
  const KvType gtype = gpu.kv_cache_type(ops::WeightType::F32);
  cpu.kv_cache_write(K.data(), V.data(), KvType::F32, qkv.data(), host_at, N, C, H, k.n_ctx);
  gpu.kv_cache_write(gK, gV, gtype, gqkv, dev_at, N, C, H, k.n_ctx);
  EXPECT_EQ(dev.read_act(gK, cache), K);  // a copy: exact
  EXPECT_EQ(dev.read_act(gV, cache), V);
  std::vector<float> out(static_cast<size_t>(N) * C),
      scratch(cpu.attention_cached_scratch_bytes(N, C, H, k.n_ctx) / sizeof(float) + 1);
  cpu.attention_cached(out.data(), scratch.data(), qkv.data(), K.data(), V.data(), KvType::F32, host_at, N, C, H,
                       k.n_ctx, k.band, nullptr);
  Act* gout = dev.act_zero(static_cast<size_t>(N) * C);
  void* gscratch = dev.raw(gpu.attention_cached_scratch_bytes(N, C, H, k.n_ctx) + 1);
  gpu.attention_cached(gout, gscratch, gqkv, gK, gV, gtype, dev_at, N, C, H, k.n_ctx, k.band, nullptr);
  expect_close("decode out", dev.read_act(gout, static_cast<size_t>(N) * C), out, tol);
}

TEST_P(CudaBackend, DecodeAttention) {
  REQUIRE_CUDA(gpu);
  check_decode(gpu, tol(), {1, 700, 64, 1, 0});     // one pair: many pieces, merged
  check_decode(gpu, tol(), {3, 100, 128, 2, 10});   // banded, head size 64
  check_decode(gpu, tol(), {64, 50, 40, 2, 0});     // head size 20; one piece per pair
  check_decode(gpu, tol(), {4, 600, 256, 2, 30});   // head size 128
  check_decode(gpu, tol(), {140, 4200, 32, 2, 0});  // many pairs, but pieces of at most 4096 keys
}

// ---- residuals and dropout --------------------------------------------------------------------------------

TEST_P(CudaBackend, DropoutMasksMatchTheCpu) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const size_t n = 10007;
  const auto drop = dropout(0.3f, 42u);
  // dropout on ones: exactly the kept elements are non-zero
  std::vector<float> ones(n, 1.0f), x = ones;
  cpu.dropout_forward(x.data(), n, drop);
  Act* gx = dev.act(ones);
  gpu.dropout_forward(gx, n, drop);
  const auto g = dev.read_act(gx, n);
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(g[i] != 0.0f, x[i] != 0.0f) << i;
    kept += x[i] != 0.0f;
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.7, 0.03);
  expect_close("dropout", g, x, 1e-2);

  const auto a = rand_bf16(n, 1), b = rand_bf16(n, 2);
  std::vector<float> res(n), din(n);
  cpu.residual_forward(res.data(), a.data(), b.data(), n, drop);
  Act* gres = dev.act_zero(n);
  gpu.residual_forward(gres, dev.act(a), dev.act(b), n, drop);
  expect_close("residual", dev.read_act(gres, n), res, tol());
  cpu.dropout_backward(din.data(), b.data(), n, drop);
  Act* gdin = dev.act_zero(n);
  gpu.dropout_backward(gdin, dev.act(b), n, drop);
  const auto gd = dev.read_act(gdin, n);
  for (size_t i = 0; i < n; i++) ASSERT_EQ(gd[i] != 0.0f, din[i] != 0.0f) << i;
  expect_close("dropout backward", gd, din, 1e-2);
  // p = 0: the backward is a copy
  gpu.dropout_backward(gdin, dev.act(b), n, dropout(0.0f, 0));
  EXPECT_EQ(dev.read_act(gdin, n), b);
}

// ---- LM head and loss ------------------------------------------------------------------------------------

TEST_P(CudaBackend, LmHead) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const int N = 24, C = 64, V = 101;  // an odd vocabulary: leading dimensions cuBLASLt may refuse
  Params P;
  const auto wte = rand_bf16(V * C, 1, 0.2f);
  const size_t ow = P.add(wte);
  float* params = P.upload(dev, gpu);
  const auto x = rand_bf16(N * C, 2);
  Act* gx = dev.act(x);
  std::vector<float> logits(N * V);
  cpu.lm_head_forward(logits.data(), x.data(), wte.data(), N, C, V);
  Act* glogits = dev.act_zero(N * V);
  gpu.lm_head_forward(glogits, gx, params + ow, N, C, V);
  expect_close("logits", dev.read_act(glogits, N * V), logits, tol());

  const auto dlogits = rand_bf16(N * V, 3);
  std::vector<float> dx(N * C);
  auto dwte = randn(V * C, 4);
  float* gdwte = dev.f32(dwte);
  Act* gdx = dev.act_zero(N * C);
  cpu.lm_head_backward(dx.data(), dwte.data(), dlogits.data(), x.data(), wte.data(), N, C, V);
  gpu.lm_head_backward(gdx, gdwte, dev.act(dlogits), gx, params + ow, N, C, V);
  expect_close("dx", dev.read_act(gdx, N * C), dx, tol());
  expect_close("dwte", dev.read(gdwte, V * C), dwte, tol());
}

TEST_P(CudaBackend, CrossEntropy) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const int N = 40, V = 1001;
  const auto logits = rand_bf16(static_cast<size_t>(N) * V, 1, 3.0f);
  std::vector<int32_t> targets(N);
  for (int i = 0; i < N; i++) targets[i] = i % 7 == 3 ? -1 : (i * 37) % V;
  std::vector<float> losses(N), lse(N);
  const double total =
      cpu.cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), N, V);
  Act* gl = dev.act(logits);
  int32_t* gt = dev.ints(targets);
  float* glosses = dev.f32(std::vector<float>(N, 9.0f));
  float* glse = dev.f32(std::vector<float>(N));
  const double gtotal = gpu.cross_entropy_forward(glosses, glse, gl, gt, N, V);
  EXPECT_NEAR(gtotal, total, 1e-4 * std::fabs(total));
  expect_close("losses", dev.read(glosses, N), losses, 1e-4);
  expect_close("lse", dev.read(glse, N), lse, 1e-4);
  const auto got = dev.read(glosses, N);
  for (int i = 0; i < N; i++) {
    if (targets[i] < 0) {
      EXPECT_EQ(got[i], 0.0f) << i;  // ignored rows score 0
    }
  }

  std::vector<float> grad = logits;
  cpu.cross_entropy_backward(grad.data(), lse.data(), targets.data(), N, V, 0.125f);
  gpu.cross_entropy_backward(gl, glse, gt, N, V, 0.125f);
  expect_close("dlogits", dev.read_act(gl, static_cast<size_t>(N) * V), grad, tol());
}

// ---- optimizer ------------------------------------------------------------------------------------------

TEST_P(CudaBackend, AdamWSumSquaresClip) {
  REQUIRE_CUDA(gpu);
  Backend& cpu = cpu_backend();
  Dev dev(gpu);
  const size_t n = 100003;
  auto param = randn(n, 1), grad = randn(n, 2, 0.1f), m = randn(n, 3, 0.01f), v = randn(n, 4, 0.01f);
  for (float& x : v) x = std::fabs(x);
  float* gp = dev.f32(param);
  float* gg = dev.f32(grad);
  float* gm = dev.f32(m);
  float* gv = dev.f32(v);
  const ops::AdamWStep s{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f - 0.9f * 0.9f, 1.0f - 0.95f * 0.95f};
  cpu.adamw_update(param.data(), grad.data(), m.data(), v.data(), n, s);
  gpu.adamw_update(gp, gg, gm, gv, n, s);
  expect_close("param", dev.read(gp, n), param, 1e-5);
  expect_close("m", dev.read(gm, n), m, 1e-5);
  expect_close("v", dev.read(gv, n), v, 1e-5);

  const double ss = cpu.sum_squares(grad.data(), n);
  EXPECT_NEAR(gpu.sum_squares(gg, n), ss, 1e-9 * ss);
  EXPECT_EQ(gpu.sum_squares(gg, n), gpu.sum_squares(gg, n));  // deterministic
  // Clipping inside the update: the gradients scaled as they are read.
  ops::AdamWStep clipped = s;
  clipped.grad_scale = 0.5f;
  cpu.adamw_update(param.data(), grad.data(), m.data(), v.data(), n, clipped);
  gpu.adamw_update(gp, gg, gm, gv, n, clipped);
  expect_close("param (clipped)", dev.read(gp, n), param, 1e-5);
  expect_close("m (clipped)", dev.read(gm, n), m, 1e-5);
  EXPECT_EQ(dev.read(gg, n), grad);  // the gradients themselves untouched
}

// ---- a whole model --------------------------------------------------------------------------------------

ModelConfig tiny(LnPlacement ln, AttentionKind att) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 64;
  c.n_ctx = 32;
  c.vocab_size = 101;
  c.ln = ln;
  c.attention = att;
  c.band = 8;
  c.dropout = 0.1f;
  return c;
}

// The relative L2 error of one tensor: what "the gradients match" means for a bf16 model.
double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

TEST_P(CudaBackend, WholeModelMatchesTheCpu) {
  REQUIRE_CUDA(gpu);
  for (auto ln : {LnPlacement::Pre, LnPlacement::Post})
    for (auto att : {AttentionKind::Dense, AttentionKind::AlternatingBanded}) {
      SCOPED_TRACE(testing::Message() << "post-LN " << (ln == LnPlacement::Post) << " banded "
                                      << (att == AttentionKind::AlternatingBanded));
      const ModelConfig cfg = tiny(ln, att);
      GPT host(cfg), device(cfg, gpu);
      host.init_gpt2(7);
      // The same bf16-representable weights on both, so only the arithmetic differs.
      for (size_t i = 0; i < host.num_parameters(); i++) host.params()[i] = bf16_round(host.params()[i]);
      std::memcpy(device.params(), static_cast<const GPT&>(host).params(),
                  host.num_parameters() * sizeof(float));
      const int B = 2, T = 32;
      std::vector<TokenId> x(B * T);
      std::vector<int32_t> y(B * T);
      for (int i = 0; i < B * T; i++) {
        x[i] = static_cast<TokenId>((13 * i + 5) % cfg.vocab_size);
        y[i] = i % 9 == 4 ? kIgnoreIndex : (11 * i + 2) % cfg.vocab_size;
      }
      // inference: logits
      host.forward(x.data(), nullptr, B, T);
      device.forward(x.data(), nullptr, B, T);
      const size_t nl = static_cast<size_t>(B) * T * cfg.vocab_size;
      expect_close("logits", std::vector<float>(device.logits(), device.logits() + nl),
                   std::vector<float>(host.logits(), host.logits() + nl), tol());
      // training, with dropout: the loss and every gradient
      const float lh = host.forward(x.data(), y.data(), B, T, true, 99);
      const float ld = device.forward(x.data(), y.data(), B, T, true, 99);
      EXPECT_NEAR(ld, lh, (fp32() ? 1e-5 : 1e-2) * std::fabs(lh));
      for (int i = 0; i < B * T; i++)
        EXPECT_NEAR(device.position_losses()[i], host.position_losses()[i], tol() * std::fabs(lh)) << i;
      host.zero_grad();
      device.zero_grad();
      host.backward();
      device.backward();
      std::vector<float> g(device.num_parameters());
      gpu.to_host(g.data(), device.grads(), g.size() * sizeof(float));
      const float* h = host.grads();
      for (const auto& p : device.layout()) {
        const double e = rel_l2(g.data() + p.offset, h + p.offset, p.numel);
        EXPECT_LE(e, fp32() ? 1e-3 : 5e-2) << p.name << ": relative L2 error " << e;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Mode, CudaBackend, testing::Values("cuda", "cuda-fp32"),
                         [](const testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param) == "cuda" ? "bf16" : "fp32";
                         });

}  // namespace
}  // namespace gpt
