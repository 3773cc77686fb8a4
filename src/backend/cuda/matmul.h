// The CUDA backend's matrix products: cuBLASLt with bf16 inputs (mixed precision) or fp32 inputs
// (fp32 mode), fp32 compute (CUBLAS_COMPUTE_32F: no TF32) and a bf16 or fp32 output, optionally
// with the bias, bias + GELU or GELU-gradient epilogue; cuBLAS's cublasGemmEx where cuBLASLt offers
// no algorithm (odd leading dimensions, say). Column-major, as cuBLAS sees it: the backend maps its
// row-major tensors onto these (see cuda_backend.cpp).
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <cstdint>
#include <map>

#include "backend/cuda/kernels.h"

namespace gpt::cuda {

// D[m, n] = op(A)[m, k] @ op(B)[k, n] + beta * D, column-major (host_device.h has the shapes).
struct Gemm : GemmShape {
  const void* A = nullptr;  // bf16, or fp32 when ab_f32
  const void* B = nullptr;
  void* D = nullptr;  // bf16, or fp32 when d_f32
  bool ab_f32 = false, d_f32 = false;
  float beta = 0.0f;
  const void* bias = nullptr;  // epilogue: + bias[row] (m values, D's type)
  // epilogue with gelu_pre (D's type, ld = ldd): D = gelu(.) keeping the value before GELU here;
  // with dgelu, D = (.) * gelu'(gelu_pre) instead (gelu_pre is read).
  void* gelu_pre = nullptr;
  bool dgelu = false;
};

class Matmul {
 public:
  // The workspace (device memory) is shared by both libraries; everything runs on `stream`.
  Matmul(cudaStream_t stream, void* workspace, size_t workspace_bytes);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // Runs g through cuBLASLt; false (nothing run) when it has no algorithm for g.
  bool run_lt(const Gemm& g);
  // Runs g through cublasGemmEx; g must have no epilogue.
  void run_plain(const Gemm& g);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool found = false;
  };
  using Key = std::array<int64_t, 17>;
  Plan& plan(const Gemm& g);

  cudaStream_t stream_;
  void* workspace_;
  size_t workspace_bytes_;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::map<Key, Plan> plans_;
};

}  // namespace gpt::cuda
