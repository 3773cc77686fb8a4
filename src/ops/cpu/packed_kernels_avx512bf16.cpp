// packed_kernels.inc compiled for AVX-512 with BF16 and VNNI (vdpbf16ps, vpdpbusd): Zen 4, Cooper Lake,
// Sapphire Rapids (flags set in CMakeLists.txt).
#define GPT_PACKED_NS avx512bf16
#define GPT_PACKED_TABLE packed_avx512bf16
#include "ops/cpu/packed_kernels.inc"
