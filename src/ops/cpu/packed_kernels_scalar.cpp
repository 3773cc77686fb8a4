// packed_kernels.inc compiled for baseline x86-64 (SSE2): the portable path (flags set in CMakeLists.txt).
#define GPT_PACKED_NS scalar
#define GPT_PACKED_TABLE packed_scalar
#include "ops/cpu/packed_kernels.inc"
