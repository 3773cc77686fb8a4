// kernels.inc compiled for AVX2 + FMA (flags set in CMakeLists.txt).
#define GPT_KERNEL_NS avx2
#define GPT_KERNEL_TABLE kernels_avx2
#include "ops/cpu/kernels.inc"
