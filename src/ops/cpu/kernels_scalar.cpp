// kernels.inc compiled for baseline x86-64 (SSE2): the portable path.
#define GPT_KERNEL_NS scalar
#define GPT_KERNEL_TABLE kernels_scalar
#include "ops/cpu/kernels.inc"
