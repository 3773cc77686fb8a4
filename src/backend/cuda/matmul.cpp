// cuBLASLt plans, one per shape, epilogue and pointer alignment: the descriptors and the algorithm
// the heuristic picks are made once and reused (the model calls the same few shapes every step).
//
// cuBLAS and cuBLASLt are opened with dlopen when the first CUDA backend is made, not linked:
// linked, cuBLASLt alone costs every run of `gpt` about 80 ms and 200 MB of memory at start-up,
// GPU or not.
#include "backend/cuda/matmul.h"

#include <dlfcn.h>

#include <string>

#include "core/error.h"

namespace gpt::cuda {
namespace {

// The library functions used here, by their exported names.
struct Libs {
  decltype(&::cublasLtCreate) LtCreate;
  decltype(&::cublasLtDestroy) LtDestroy;
  decltype(&::cublasLtGetStatusString) LtGetStatusString;
  decltype(&::cublasLtMatmulDescCreate) LtMatmulDescCreate;
  decltype(&::cublasLtMatmulDescDestroy) LtMatmulDescDestroy;
  decltype(&::cublasLtMatmulDescSetAttribute) LtMatmulDescSetAttribute;
  decltype(&::cublasLtMatrixLayoutCreate) LtMatrixLayoutCreate;
  decltype(&::cublasLtMatrixLayoutDestroy) LtMatrixLayoutDestroy;
  decltype(&::cublasLtMatmulPreferenceCreate) LtMatmulPreferenceCreate;
  decltype(&::cublasLtMatmulPreferenceDestroy) LtMatmulPreferenceDestroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) LtMatmulPreferenceSetAttribute;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) LtMatmulAlgoGetHeuristic;
  decltype(&::cublasLtMatmul) LtMatmul;
  decltype(&::cublasCreate_v2) Create;
  decltype(&::cublasDestroy_v2) Destroy;
  decltype(&::cublasSetStream_v2) SetStream;
  decltype(&::cublasSetWorkspace_v2) SetWorkspace;
  // cublasGemmEx is overloaded in C++: the C function's type.
  cublasStatus_t (*GemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                           const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                           cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  decltype(&::cublasGetStatusString) GetStatusString;
};

// By soname (the loader's paths, the executable's run path), then in the toolkit's directory.
void* open_library(const char* soname) {
  void* h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen((std::string(GPT_CUDA_LIBRARY_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) fail("the CUDA backend cannot load {}: {}", soname, dlerror());
  return h;
}

template <typename F>
void resolve(F& f, void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (!p) fail("the CUDA backend cannot find {} in cuBLAS: {}", name, dlerror());
  f = reinterpret_cast<F>(p);
}

Libs load_libs() {
  void* lt = open_library(GPT_CUBLASLT_SONAME);
  void* blas = open_library(GPT_CUBLAS_SONAME);
  Libs l{};
  resolve(l.LtCreate, lt, "cublasLtCreate");
  resolve(l.LtDestroy, lt, "cublasLtDestroy");
  resolve(l.LtGetStatusString, lt, "cublasLtGetStatusString");
  resolve(l.LtMatmulDescCreate, lt, "cublasLtMatmulDescCreate");
  resolve(l.LtMatmulDescDestroy, lt, "cublasLtMatmulDescDestroy");
  resolve(l.LtMatmulDescSetAttribute, lt, "cublasLtMatmulDescSetAttribute");
  resolve(l.LtMatrixLayoutCreate, lt, "cublasLtMatrixLayoutCreate");
  resolve(l.LtMatrixLayoutDestroy, lt, "cublasLtMatrixLayoutDestroy");
  resolve(l.LtMatmulPreferenceCreate, lt, "cublasLtMatmulPreferenceCreate");
  resolve(l.LtMatmulPreferenceDestroy, lt, "cublasLtMatmulPreferenceDestroy");
  resolve(l.LtMatmulPreferenceSetAttribute, lt, "cublasLtMatmulPreferenceSetAttribute");
  resolve(l.LtMatmulAlgoGetHeuristic, lt, "cublasLtMatmulAlgoGetHeuristic");
  resolve(l.LtMatmul, lt, "cublasLtMatmul");
  resolve(l.Create, blas, "cublasCreate_v2");
  resolve(l.Destroy, blas, "cublasDestroy_v2");
  resolve(l.SetStream, blas, "cublasSetStream_v2");
  resolve(l.SetWorkspace, blas, "cublasSetWorkspace_v2");
  resolve(l.GemmEx, blas, "cublasGemmEx");
  resolve(l.GetStatusString, blas, "cublasGetStatusString");
  return l;  // the libraries stay open for the life of the process
}

// Loaded on first use; a failed load throws and is tried again next time.
const Libs& libs() {
  static const Libs l = load_libs();
  return l;
}

void check_lt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLASLt {} failed: {}", what, libs().LtGetStatusString(st));
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
  check_lt(libs().LtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), "descriptor attribute");
}

cublasLtEpilogue_t epilogue_of(const Gemm& g) {
  if (g.gelu_pre && g.dgelu) return CUBLASLT_EPILOGUE_DGELU;
  if (g.gelu_pre) return g.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  return g.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

}  // namespace

void load_cublas() { libs(); }

Matmul::Matmul(cudaStream_t stream, void* workspace, size_t workspace_bytes)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  check_lt(libs().LtCreate(&lt_), "create");
  const cublasStatus_t st = libs().Create(&blas_);
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLAS create failed: {}", libs().GetStatusString(st));
  libs().SetStream(blas_, stream_);
  libs().SetWorkspace(blas_, workspace_, workspace_bytes_);
}

Matmul::~Matmul() {
  for (auto& [key, p] : plans_) {
    if (p.a) libs().LtMatrixLayoutDestroy(p.a);
    if (p.b) libs().LtMatrixLayoutDestroy(p.b);
    if (p.d) libs().LtMatrixLayoutDestroy(p.d);
    if (p.desc) libs().LtMatmulDescDestroy(p.desc);
  }
  if (blas_) libs().Destroy(blas_);
  if (lt_) libs().LtDestroy(lt_);
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
                   g.ab_f32,
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
  const cudaDataType_t abt = g.ab_f32 ? CUDA_R_32F : CUDA_R_16BF;
  check_lt(libs().LtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor");
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue_of(g));
  // The heuristic reads the epilogue pointers for their alignment (the key holds it).
  if (g.bias) set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  if (g.gelu_pre) {
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.gelu_pre);
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, static_cast<int64_t>(g.ldd));
  }
  // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k), D is m x n.
  check_lt(libs().LtMatrixLayoutCreate(&p.a, abt, g.ta ? g.k : g.m, g.ta ? g.m : g.k, g.lda), "layout");
  check_lt(libs().LtMatrixLayoutCreate(&p.b, abt, g.tb ? g.n : g.k, g.tb ? g.k : g.n, g.ldb), "layout");
  check_lt(libs().LtMatrixLayoutCreate(&p.d, dt, g.m, g.n, g.ldd), "layout");

  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(libs().LtMatmulPreferenceCreate(&pref), "preference");
  const uint64_t ws = workspace_bytes_;
  libs().LtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  const uint32_t al_a = static_cast<uint32_t>(key[12]), al_b = static_cast<uint32_t>(key[13]),
                 al_d = static_cast<uint32_t>(key[14]);
  libs().LtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                        sizeof(al_a));
  libs().LtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                        sizeof(al_b));
  libs().LtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                        sizeof(al_d));
  libs().LtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                        sizeof(al_d));
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  const cublasStatus_t st =
      libs().LtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &count);
  libs().LtMatmulPreferenceDestroy(pref);
  p.found = st == CUBLAS_STATUS_SUCCESS && count > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p.found) p.algo = result.algo;
  return p;
}

bool Matmul::run_lt(const Gemm& g) {
  if (g.gelu_pre && g.ldd % 8 != 0) return false;  // the GELU input's leading dimension must divide by 8
  Plan& p = plan(g);
  if (!p.found) return false;
  if (g.bias) set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  if (g.gelu_pre) set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.gelu_pre);
  const float alpha = 1.0f, beta = g.beta;
  const cublasStatus_t st = libs().LtMatmul(lt_, p.desc, &alpha, g.A, p.a, g.B, p.b, &beta, g.D, p.d, g.D,
                                            p.d, &p.algo, workspace_, workspace_bytes_, stream_);
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
  const cudaDataType_t abt = g.ab_f32 ? CUDA_R_32F : CUDA_R_16BF;
  const cublasStatus_t st =
      libs().GemmEx(blas_, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k,
                    &alpha, g.A, abt, g.lda, g.B, abt, g.ldb, &beta, g.D, g.d_f32 ? CUDA_R_32F : CUDA_R_16BF,
                    g.ldd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS)
    fail("cublasGemmEx failed on {}x{}x{}: {}", g.m, g.n, g.k, libs().GetStatusString(st));
}

}  // namespace gpt::cuda
