// The decoder's attention kernels, one table per instruction-set level (attention_kernels.inc
// compiled three times, like ops/cpu/kernels.inc): a query against a row's cached keys and values
// (fp32 or fp16 storage), the masked softmax of a prefill block, and fp16 conversions.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gpt::gen {

struct AttentionKernels {
  const char* level;
  // out[hs] = sum_j softmax_j(scale * q . K[j]) V[j] over the n rows of K and V (row stride hs).
  // scratch: n + hs floats.
  void (*attend_f32)(float* out, const float* q, const float* K, const float* V, int n, int hs, float scale,
                     float* scratch);
  void (*attend_f16)(float* out, const float* q, const uint16_t* K, const uint16_t* V, int n, int hs,
                     float scale, float* scratch);
  // softmax over row[lo..hi] in place; the rest of row[0..n) becomes 0.
  void (*masked_softmax)(float* row, int n, int lo, int hi);
  // IEEE half <-> float, round to nearest even (the same bits at every level).
  void (*to_f16)(uint16_t* dst, const float* src, size_t n);
  void (*from_f16)(float* dst, const uint16_t* src, size_t n);
};

extern const AttentionKernels attention_avx512;
extern const AttentionKernels attention_avx2;
extern const AttentionKernels attention_scalar;

// The table for this CPU (core/cpu.h's level, GPT_CPU caps it).
const AttentionKernels& attention_kernels();

}  // namespace gpt::gen
