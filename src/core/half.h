// IEEE half (fp16) and bfloat16 <-> float32, one value at a time: round to nearest even, NaN stays
// NaN, overflow to infinity. The file formats (safetensors, llm.c), the packed weights and the CPU
// kernels' scalar tails all use these; the vector kernels (F16C, AVX-512) are checked against them.
#pragma once
#include <cstdint>

namespace gpt {

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

}  // namespace gpt
