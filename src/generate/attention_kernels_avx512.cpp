// attention_kernels.inc compiled for AVX-512 (flags set in CMakeLists.txt).
#define GPT_ATTN_NS avx512
#define GPT_ATTN_TABLE attention_avx512
#include "generate/attention_kernels.inc"
