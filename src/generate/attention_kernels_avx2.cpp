// attention_kernels.inc compiled for AVX2 + FMA + F16C (flags set in CMakeLists.txt).
#define GPT_ATTN_NS avx2
#define GPT_ATTN_TABLE attention_avx2
#include "generate/attention_kernels.inc"
