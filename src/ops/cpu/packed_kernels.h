// The kernels behind ops::packed_linear: one table per instruction-set level, each compiled from
// packed_kernels.inc with that level's flags (see CMakeLists.txt). Every function is
// single-threaded over the range it is given; packed.cpp splits the work between threads.
#pragma once
#include <cstdint>

#include "ops/packed.h"

namespace gpt::ops::cpu {

struct PackedKernels {
  const char* level;
  // f32 rows: y[n*ldy + o] = x[n,:] . w[o,:] (+ bias[o]) for n < N and o in [o0, o1).
  void (*f32_rows)(float* y, int ldy, const float* x, int N, const float* w, int in, const float* bias,
                   int o0, int o1);
  // bf16 panels [p0, p1) (see packed.h): x is N rows of kp bf16 values (zero padded). Columns >= out
  // (the last panel's padding) are not written.
  void (*bf16_panels)(float* y, int ldy, const uint16_t* x, int N, const uint16_t* w, int kp,
                      const float* bias, int out, int p0, int p1);
  // q8 panels [p0, p1): x quantized per block of 32 (q: N rows of kp int8; d: scales and s: sums of
  // q, both N rows of kp/32); w as packed.h lays it out, wd its half-precision scales.
  void (*q8_panels)(float* y, int ldy, const int8_t* xq, const float* xd, const int32_t* xs, int N,
                    const uint8_t* w, const uint16_t* wd, int kp, const float* bias, int out, int p0, int p1);
  // One row of x to bf16 (round to nearest even), zero padded from n to kp.
  void (*round_bf16)(uint16_t* dst, const float* x, int n, int kp);
  // One row of x to int8 blocks of 32: d = max|x|/127, q = round(x/d), s = sum of q; padded to kp.
  void (*quantize_q8)(int8_t* q, float* d, int32_t* s, const float* x, int n, int kp);
};

extern const PackedKernels packed_avx512bf16;  // AVX-512 + BF16 + VNNI (vdpbf16ps, vpdpbusd)
extern const PackedKernels packed_avx512;
extern const PackedKernels packed_avx2;
extern const PackedKernels packed_scalar;

// The table packed_linear uses on this CPU (GPT_CPU caps it, as for the other kernels).
const PackedKernels& packed_kernels();
// packed_linear through a given table (tests run every table the CPU can execute).
void packed_linear_using(const PackedKernels& k, float* y, const float* x, const PackedMatrix& w,
                         const float* bias, int N);

}  // namespace gpt::ops::cpu
