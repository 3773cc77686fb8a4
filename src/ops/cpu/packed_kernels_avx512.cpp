// packed_kernels.inc compiled for AVX-512 (F, BW, VL) without BF16/VNNI (flags set in CMakeLists.txt).
#define GPT_PACKED_NS avx512
#define GPT_PACKED_TABLE packed_avx512
#include "ops/cpu/packed_kernels.inc"
