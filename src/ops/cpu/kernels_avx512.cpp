// kernels.inc compiled for AVX-512 (flags set in CMakeLists.txt).
#define GPT_KERNEL_NS avx512
#define GPT_KERNEL_TABLE kernels_avx512
#include "ops/cpu/kernels.inc"
