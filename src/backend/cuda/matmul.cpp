// cuBLASLt plans, one per shape, epilogue and pointer alignment: the descriptors and the algorithm
// the heuristic picks are made once and reused (the model calls the same few shapes every step).
#include "backend/cuda/matmul.h"

#include "core/error.h"

namespace gpt::cuda {
namespace {

void check_lt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLASLt {} failed: {}", what, cublasLtGetStatusString(st));
}

// The largest power of two (up to 256) that divides the address: cuBLASLt picks algorithms by it.
int64_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int64_t al = 256;
  while (al > 1 && a % static_cast<uintptr_t>(al) != 0) al /= 2;
  return al;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  check_lt(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), "descriptor attribute");
}

cublasLtEpilogue_t epilogue_of(const Gemm& g) {
  if (g.gelu_pre) return g.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  return g.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

}  // namespace

Matmul::Matmul(cudaStream_t stream, void* workspace, size_t workspace_bytes)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check_lt(cublasLtCreate(&lt_), "create");
  const cublasStatus_t st = cublasCreate(&blas_);
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLAS create failed: {}", cublasGetStatusString(st));
  cublasSetStream(blas_, stream_);
  cublasSetWorkspace(blas_, workspace_, workspace_bytes_);
}

Matmul::~Matmul() {
  for (auto& [key, p] : plans_) {
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.d) cublasLtMatrixLayoutDestroy(p.d);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  if (blas_) cublasDestroy(blas_);
  if (lt_) cublasLtDestroy(lt_);
}

Matmul::Plan& Matmul::plan(const Gemm& g) {
  const Key key = {g.ta,
                   g.tb,
                   g.m,
                   g.n,
                   g.k,
                   g.lda,
                   g.ldb,
                   g.ldd,
                   g.d_f32,
                   g.beta != 0.0f,
                   epilogue_of(g),
                   alignment(g.A),
                   alignment(g.B),
                   alignment(g.D),
                   g.bias ? alignment(g.bias) : 0,
                   g.gelu_pre ? alignment(g.gelu_pre) : 0};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan& p = plans_[key];
  const cudaDataType_t dt = g.d_f32 ? CUDA_R_32F : CUDA_R_16BF;
  check_lt(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor");
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue_of(g));
  // The heuristic reads the epilogue pointers for their alignment (the key holds it).
  if (g.bias) set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(g.bias));
  if (g.gelu_pre) {
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, static_cast<void*>(g.gelu_pre));
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, static_cast<int64_t>(g.ldd));
  }
  // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k), D is m x n.
  check_lt(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, g.ta ? g.k : g.m, g.ta ? g.m : g.k, g.lda),
           "layout");
  check_lt(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, g.tb ? g.n : g.k, g.tb ? g.k : g.n, g.ldb),
           "layout");
  check_lt(cublasLtMatrixLayoutCreate(&p.d, dt, g.m, g.n, g.ldd), "layout");

  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "preference");
  const uint64_t ws = workspace_bytes_;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  const uint32_t al_a = static_cast<uint32_t>(key[11]), al_b = static_cast<uint32_t>(key[12]),
                 al_d = static_cast<uint32_t>(key[13]);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d));
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &count);
  cublasLtMatmulPreferenceDestroy(pref);
  p.found = st == CUBLAS_STATUS_SUCCESS && count > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p.found) p.algo = result.algo;
  return p;
}

bool Matmul::run_lt(const Gemm& g) {
  if (g.gelu_pre && g.ldd % 8 != 0) return false;  // the GELU input's leading dimension must divide by 8
  Plan& p = plan(g);
  if (!p.found) return false;
  if (g.bias) set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(g.bias));
  if (g.gelu_pre) set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, static_cast<void*>(g.gelu_pre));
  const float alpha = 1.0f, beta = g.beta;
  const cublasStatus_t st = cublasLtMatmul(lt_, p.desc, &alpha, g.A, p.a, g.B, p.b, &beta, g.D, p.d, g.D, p.d,
                                           &p.algo, workspace_, workspace_bytes_, stream_);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) {  // the heuristic's pick refused the call: never again
    p.found = false;
    return false;
  }
  check_lt(st, "matmul");
  return true;
}

void Matmul::run_plain(const Gemm& g) {
  if (g.bias || g.gelu_pre) fail("internal error: cublasGemmEx has no epilogue");
  const float alpha = 1.0f, beta = g.beta;
  const cublasStatus_t st =
      cublasGemmEx(blas_, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k,
                   &alpha, g.A, CUDA_R_16BF, g.lda, g.B, CUDA_R_16BF, g.ldb, &beta, g.D,
                   g.d_f32 ? CUDA_R_32F : CUDA_R_16BF, g.ldd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS)
    fail("cublasGemmEx failed on {}x{}x{}: {}", g.m, g.n, g.k, cublasGetStatusString(st));
}

}  // namespace gpt::cuda
