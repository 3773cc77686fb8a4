// The table of CPU kernels that ops.cpp dispatches through: one table per instruction-set level,
// each compiled from kernels.inc with that level's compiler flags (see CMakeLists.txt).
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/ops.h"

namespace gpt::ops::cpu {

struct KernelTable {
  const char* level;
  void (*embedding_forward)(float*, const TokenId*, const float*, const float*, int, int, int);
  void (*embedding_backward)(float*, float*, const float*, const TokenId*, int, int, int);
  void (*layernorm_forward)(float*, float*, float*, const float*, const float*, const float*, int, int,
                            float);
  void (*layernorm_backward)(float*, float*, float*, const float*, const float*, const float*, const float*,
                             const float*, int, int);
  void (*attention_forward)(float*, float*, float*, const float*, int, int, int, int, int, Dropout);
  void (*attention_backward)(float*, float*, const float*, const float*, const float*, int, int, int, int,
                             int, Dropout);
  void (*gelu_forward)(float*, const float*, size_t);
  void (*gelu_backward)(float*, const float*, const float*, size_t);
  void (*residual_forward)(float*, const float*, const float*, size_t, Dropout);
  void (*dropout_forward)(float*, size_t, Dropout);
  void (*dropout_backward)(float*, const float*, size_t, Dropout);
  double (*cross_entropy_forward)(float*, float*, const float*, const int32_t*, int, int);
  void (*cross_entropy_backward)(float*, const float*, const int32_t*, int, int, float);
  void (*add_bias_rows)(float*, const float*, int, int);  // out[n,:] = bias
  void (*column_sums)(float*, const float*, int, int);    // dbias += sum over rows
  void (*adamw_update)(float*, const float*, float*, float*, size_t, const AdamWStep&);
};

extern const KernelTable kernels_avx512;
extern const KernelTable kernels_avx2;
extern const KernelTable kernels_scalar;

}  // namespace gpt::ops::cpu
