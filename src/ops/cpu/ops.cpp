// The CPU side of ops/ops.h: the large matrix products through oneDNN's sgemm (its JIT kernels
// beat OpenBLAS on the model's shapes: `gpt bench gemm`), the small per-head products of attention
// through OpenBLAS, everything else through the kernel table for this CPU's instruction-set level
// (chosen once, at first use).
#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>

#include <cstdlib>
#include <cstring>

#include "core/error.h"

#include "core/cpu.h"
#include "core/parallel.h"
#include "ops/cpu/kernels.h"
#include "ops/ops.h"

namespace gpt::ops {

const cpu::KernelTable& cpu::kernel_table() {
  static const cpu::KernelTable* t = [] {
    const std::string level = gpt::cpu().level();
    if (level == "avx512") return &cpu::kernels_avx512;
    if (level == "avx2") return &cpu::kernels_avx2;
    return &cpu::kernels_scalar;
  }();
  return *t;
}

namespace {

const cpu::KernelTable& table() { return cpu::kernel_table(); }

uint32_t mix(uint64_t x) {  // splitmix64's finaliser, folded to 32 bits
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return static_cast<uint32_t>(x ^ (x >> 32));
}

bool use_openblas() {  // GPT_GEMM=openblas: the other library, for comparisons
  static const bool v = [] {
    const char* e = std::getenv("GPT_GEMM");
    return e && std::strcmp(e, "openblas") == 0;
  }();
  return v;
}

}  // namespace

const char* kernel_level() { return table().level; }

const char* gemm_library() { return use_openblas() ? "openblas" : "onednn"; }

namespace {

// OpenBLAS splits one product over its threads in ways that depend on their number, and so do the
// sums it makes. Here C is cut into as many tiles of whole columns as the engine's thread ceiling
// (core/parallel.h), and each tile is one single-threaded call (OpenBLAS runs serially inside a
// parallel region): every element of C is computed the same way whatever the size of the team that
// runs the tiles, which adapt_threads() shrinks on a busy machine.
void openblas_tiled(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc) {
  const CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  constexpr int kAlign = 64;
  const int units = (N + kAlign - 1) / kAlign;
  const int tiles = std::max(1, std::min(num_threads(), units));
#pragma omp parallel for schedule(dynamic, 1) if (tiles > 1)
  for (int t = 0; t < tiles; t++) {
    const int n0 = static_cast<int>(static_cast<long>(units) * t / tiles) * kAlign;
    const int n1 = std::min(N, static_cast<int>(static_cast<long>(units) * (t + 1) / tiles) * kAlign);
    const float* b = tb ? B + static_cast<size_t>(n0) * ldb : B + n0;
    cblas_sgemm(CblasRowMajor, TA, TB, M, n1 - n0, K, alpha, A, lda, b, ldb, beta, C + n0, ldc);
  }
}

void onednn_one(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc) {
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (st != dnnl_success) fail("oneDNN sgemm failed (status {}) on {}x{}x{}", static_cast<int>(st), M, N, K);
}

// C cut into as many tiles as the thread ceiling along its longer side, each one single-threaded
// oneDNN call (it runs serially inside a parallel region), the tiles shared by the team.
void onednn_tiled(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc) {
  const bool by_cols = N > M;
  const int len = by_cols ? N : M, align = by_cols ? 64 : 16;
  const int units = (len + align - 1) / align;
  const int tiles = std::max(1, std::min(num_threads(), units));
  if (tiles == 1) {  // one thread: oneDNN would otherwise split it its own way
    const int team = omp_get_max_threads();
    if (team > 1) omp_set_num_threads(1);
    onednn_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (team > 1) omp_set_num_threads(team);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < tiles; t++) {
    const int i0 = static_cast<int>(static_cast<long>(units) * t / tiles) * align;
    const int n = std::min(len, static_cast<int>(static_cast<long>(units) * (t + 1) / tiles) * align) - i0;
    if (by_cols) {
      const float* b = tb ? B + static_cast<size_t>(i0) * ldb : B + i0;
      onednn_one(ta, tb, M, n, K, alpha, A, lda, b, ldb, beta, C + i0, ldc);
    } else {
      const float* a = ta ? A + i0 : A + static_cast<size_t>(i0) * lda;
      onednn_one(ta, tb, n, N, K, alpha, a, lda, B, ldb, beta, C + static_cast<size_t>(i0) * ldc, ldc);
    }
  }
}

}  // namespace

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  // Measured with `gpt bench gemm` on Zen 4: oneDNN is 10-110 % faster on every shape of the
  // model except A @ B^T with a long inner dimension (the dX of GPT-2's MLP projection,
  // 256x768x3072: 139 vs 173 GFLOP/s), where OpenBLAS stays.
  const bool openblas_shape = !ta && tb && K >= 1024;
  if (use_openblas() || openblas_shape) {
    openblas_tiled(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // oneDNN splits a product its own way, which depends on the number of threads (for a small C
  // with a long inner dimension it splits K and adds the partial sums). A large product always gets
  // the thread ceiling, whatever the team size now: its threads meet once, at its end, so on a busy
  // machine it runs about as fast as on a smaller team (the thread that shares its core does half
  // the work at half the speed). A small one would wait at that end for a whole time slice of the
  // other program: it runs as tiles, one single-threaded call each, on the team. Either way the
  // arithmetic depends on the shape and the ceiling only, never on the load.
  if (2.0 * M * N * K >= 5e8) {
    const int team = omp_get_max_threads(), ceiling = num_threads();
    if (team != ceiling) omp_set_num_threads(ceiling);
    onednn_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (team != ceiling) omp_set_num_threads(team);
    return;
  }
  onednn_tiled(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

uint32_t dropout_seed(uint64_t step_seed, int layer, int site) {
  return mix(step_seed ^ (static_cast<uint64_t>(mix(static_cast<uint64_t>(layer) * 8 + site)) << 17));
}

void embedding_forward(float* out, const TokenId* ids, const float* wte, const float* wpe, int B, int T,
                       int C) {
  table().embedding_forward(out, ids, wte, wpe, B, T, C);
}
void embedding_backward(float* dwte, float* dwpe, const float* dout, const TokenId* ids, int B, int T,
                        int C) {
  table().embedding_backward(dwte, dwpe, dout, ids, B, T, C);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                       int N, int C, float eps) {
  table().layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
}
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int N, int C) {
  table().layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}

// out = inp @ w (+ bias): the bias is written first and sgemm adds the product onto it.
void linear_forward(float* out, const float* inp, const float* w, const float* bias, int N, int IC, int OC) {
  if (bias) table().add_bias_rows(out, bias, N, OC);
  gemm(false, false, N, OC, IC, 1.0f, inp, IC, w, OC, bias ? 1.0f : 0.0f, out, OC);
}

void linear_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                     const float* w, int N, int IC, int OC, bool accumulate) {
  if (dinp)  // dinp[N,IC] = dout[N,OC] @ w[IC,OC]^T
    gemm(false, true, N, IC, OC, 1.0f, dout, OC, w, OC, accumulate ? 1.0f : 0.0f, dinp, IC);
  if (dw)  // dw[IC,OC] += inp[N,IC]^T @ dout[N,OC]
    gemm(true, false, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dw, OC);
  if (dbias) table().column_sums(dbias, dout, N, OC);
}

void lm_head_forward(float* logits, const float* x, const float* wte, int N, int C, int V) {
  gemm(false, true, N, V, C, 1.0f, x, C, wte, C, 0.0f, logits, V);
}

void lm_head_backward(float* dx, float* dwte, const float* dlogits, const float* x, const float* wte, int N,
                      int C, int V) {
  // dx[N,C] = dlogits[N,V] @ wte[V,C]
  gemm(false, false, N, C, V, 1.0f, dlogits, V, wte, C, 0.0f, dx, C);
  // dwte[V,C] += dlogits^T[V,N] @ x[N,C]
  if (dwte) gemm(true, false, V, C, N, 1.0f, dlogits, V, x, C, 1.0f, dwte, C);
}

// Row-major products through gemm (C[M,N] = alpha op(A) op(B) + beta C).
void lora_forward(float* out, float* u, float* xd, const float* x, const float* A, const float* B, int N, int IN,
                  int r, int OUT, float scale, Dropout drop) {
  const size_t nx = static_cast<size_t>(N) * IN;
  if (drop.active()) {  // the same mask in the backward: it is seeded
    std::copy(x, x + nx, xd);
    dropout_forward(xd, nx, drop);
    x = xd;
  }
  gemm(false, true, N, r, IN, 1.0f, x, IN, A, IN, 0.0f, u, r);        // u[N,r] = x @ A^T
  gemm(false, true, N, OUT, r, scale, u, r, B, r, 1.0f, out, OUT);    // out += scale u @ B^T
}

void lora_backward(float* dinp, float* dA, float* dB, float* du, float* xd, const float* dout, const float* x,
                   const float* u, const float* A, const float* B, int N, int IN, int r, int OUT, float scale,
                   Dropout drop) {
  const size_t nx = static_cast<size_t>(N) * IN;
  gemm(true, false, OUT, r, N, scale, dout, OUT, u, r, 1.0f, dB, r);     // dB[OUT,r] += scale dout^T u
  gemm(false, false, N, r, OUT, scale, dout, OUT, B, r, 0.0f, du, r);    // du[N,r] = scale dout @ B
  if (drop.active()) {
    std::copy(x, x + nx, xd);
    dropout_forward(xd, nx, drop);
  }
  gemm(true, false, r, IN, N, 1.0f, du, r, drop.active() ? xd : x, IN, 1.0f, dA, IN);  // dA += du^T drop(x)
  if (!dinp) return;
  if (!drop.active()) {  // dinp[N,IN] += du @ A
    gemm(false, false, N, IN, r, 1.0f, du, r, A, IN, 1.0f, dinp, IN);
    return;
  }
  gemm(false, false, N, IN, r, 1.0f, du, r, A, IN, 0.0f, xd, IN);  // xd = du @ A, then through the mask
  dropout_backward(xd, xd, nx, drop);
  residual_forward(dinp, dinp, xd, nx, Dropout{});
}

size_t attention_scratch_floats(int T) {
  return static_cast<size_t>(num_threads()) * 2 * kAttnBlock * static_cast<size_t>(T);
}

void attention_forward(float* out, float* att, float* scratch, const float* qkv, int B, int T, int C, int H,
                       int band, Dropout drop) {
  table().attention_forward(out, att, scratch, qkv, B, T, C, H, band, drop);
}
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att,
                        int B, int T, int C, int H, int band, Dropout drop) {
  table().attention_backward(dqkv, scratch, dout, qkv, att, B, T, C, H, band, drop);
}

void gelu_forward(float* out, const float* inp, size_t n) { table().gelu_forward(out, inp, n); }
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
  table().gelu_backward(dinp, inp, dout, n);
}

void residual_forward(float* out, const float* a, const float* b, size_t n, Dropout drop) {
  table().residual_forward(out, a, b, n, drop);
}
void dropout_forward(float* x, size_t n, Dropout drop) { table().dropout_forward(x, n, drop); }
void dropout_backward(float* dinp, const float* dout, size_t n, Dropout drop) {
  table().dropout_backward(dinp, dout, n, drop);
}

double cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets, int N,
                             int V) {
  return table().cross_entropy_forward(losses, lse, logits, targets, N, V);
}
void cross_entropy_backward(float* logits, const float* lse, const int32_t* targets, int N, int V,
                            float scale) {
  table().cross_entropy_backward(logits, lse, targets, N, V, scale);
}

void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, const AdamWStep& s) {
  table().adamw_update(param, grad, m, v, n, s);
}

double sum_squares(const float* x, size_t n) {
  constexpr size_t kChunks = 64;
  const size_t chunk = std::max<size_t>(4096, (n + kChunks - 1) / kChunks);
  const size_t chunks = (n + chunk - 1) / chunk;
  double part[kChunks] = {};
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (size_t c = 0; c < chunks; c++) {
    const size_t i1 = std::min(n, (c + 1) * chunk);
    double s = 0.0;
    for (size_t i = c * chunk; i < i1; i++) s += static_cast<double>(x[i]) * x[i];
    part[c] = s;
  }
  double total = 0.0;
  for (size_t c = 0; c < chunks; c++) total += part[c];
  return total;
}

}  // namespace gpt::ops
