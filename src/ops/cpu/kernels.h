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
  // Attention over a key/value cache (attention_cached.cpp): one query against n cached keys and
  // values, fp32 or IEEE half (scratch: n + hs floats); a masked softmax of a block's score row
  // (softmax over row[lo..hi], the rest of row[0..n) becomes 0); half <-> float conversions.
  void (*attend_f32)(float* out, const float* q, const float* K, const float* V, int n, int hs, float scale,
                     float* scratch);
  void (*attend_f16)(float* out, const float* q, const uint16_t* K, const uint16_t* V, int n, int hs,
                     float scale, float* scratch);
  void (*masked_softmax)(float* row, int n, int lo, int hi);
  void (*to_f16)(uint16_t* dst, const float* src, size_t n);
  void (*from_f16)(float* dst, const uint16_t* src, size_t n);
};

// The table for this CPU (core/cpu.h's level; GPT_CPU caps it).
const KernelTable& kernel_table();

extern const KernelTable kernels_avx512;
extern const KernelTable kernels_avx2;
extern const KernelTable kernels_scalar;

}  // namespace gpt::ops::cpu
