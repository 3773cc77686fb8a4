// packed_kernels.inc compiled for AVX2 + FMA + F16C (flags set in CMakeLists.txt).
#define GPT_PACKED_NS avx2
#define GPT_PACKED_TABLE packed_avx2
#include "ops/cpu/packed_kernels.inc"
