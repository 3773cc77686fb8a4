// attention_kernels.inc compiled for the baseline x86-64 (SSE2), for any CPU; plus the table choice.
#define GPT_ATTN_NS scalar
#define GPT_ATTN_TABLE attention_scalar
#include "generate/attention_kernels.inc"

#include <string>

#include "core/cpu.h"

namespace gpt::gen {

const AttentionKernels& attention_kernels() {
  static const AttentionKernels* t = [] {
    const std::string level = gpt::cpu().level();
    if (level == "avx512") return &attention_avx512;
    if (level == "avx2") return &attention_avx2;
    return &attention_scalar;
  }();
  return *t;
}

}  // namespace gpt::gen
