// Weight matrices packed for inference (fp32, bf16 or int8 with per-block scales) and the one
// product that uses them, y = x W^T + b. Training keeps fp32 Conv1D weights (model/gpt.h); these
// are what a decoder reads token after token, so their layout is chosen for the kernels: a
// decode step streams every byte once, a prefill reuses each panel of weights across many rows.
// Formats and layouts: docs/quantization.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gpt::ops {

enum class WeightType { F32, BF16, Q8 };
const char* weight_type_name(WeightType t);           // "f32", "bf16", "q8"
WeightType parse_weight_type(std::string_view name);  // throws gpt::Error on anything else
inline constexpr int kQ8Block = 32;                   // inputs per int8 block, one scale per block

// Outputs per panel in the bf16 and q8 layouts: 16 fp32 lanes of one AVX-512 register.
inline constexpr int kPanel = 16;

// A weight matrix stored for inference as OUT rows of IN inputs, used as y[N, OUT] = x[N, IN] @ W^T
// + bias. Owns its storage (64-byte aligned); movable, not copyable.
//
// Layouts in memory (the file formats are plain row-major; see docs/quantization.md):
//   f32:  [OUT][IN] rows.
//   bf16: panels of 16 rows, [OUT/16][KP/2][16][2]: for each pair of inputs, 16 rows' pairs.
//   q8:   panels of 16 rows, [OUT/16][KP/4][16][4] bytes holding w + 128 (unsigned), and scales
//         [OUT/16][KP/32][16] as IEEE half. KP = IN rounded up to 32, OUT rounded up to 16; the
//         padding is zero weights.
class PackedMatrix {
 public:
  PackedMatrix();
  PackedMatrix(PackedMatrix&& o) noexcept;
  PackedMatrix& operator=(PackedMatrix&& o) noexcept;
  PackedMatrix(const PackedMatrix&) = delete;
  PackedMatrix& operator=(const PackedMatrix&) = delete;
  ~PackedMatrix();

  static PackedMatrix from_conv1d(const float* w, int in, int out,
                                  WeightType type);  // w[IN, OUT] (GPT-2 Conv1D)
  static PackedMatrix from_rows(const float* w, int out, int in,
                                WeightType type);  // w[OUT, IN] (wte / lm_head)
  // From the file formats, bit for bit: bf16 rows [OUT, IN]; int8 rows [OUT, IN] with half-precision
  // scales [OUT, q8_blocks()] (IN % 32 != 0: the last block of a row is shorter).
  static PackedMatrix from_bf16_rows(const uint16_t* w, int out, int in);
  static PackedMatrix from_q8_rows(const int8_t* q, const uint16_t* scales, int out, int in);

  WeightType type() const { return type_; }
  int in() const { return in_; }
  int out() const { return out_; }
  size_t bytes() const { return bytes_; }        // storage bytes
  void dequantize_row(int r, float* dst) const;  // row r (= one embedding row for wte) as fp32 [IN]

  // Back to the file formats (the inverse of from_*_rows; the types must match).
  void f32_rows(float* dst) const;                  // [OUT, IN]
  void bf16_rows(uint16_t* dst) const;              // [OUT, IN]
  void q8_rows(int8_t* q, uint16_t* scales) const;  // [OUT, IN] and [OUT, q8_blocks()]
  int q8_blocks() const { return (in_ + kQ8Block - 1) / kQ8Block; }

  // Raw storage for the kernels (layouts above).
  int padded_in() const { return kp_; }
  const void* data() const { return data_; }
  const uint16_t* q8_scales() const { return scales_; }

 private:
  void allocate(WeightType type, int out, int in);

  WeightType type_ = WeightType::F32;
  int in_ = 0, out_ = 0, kp_ = 0;
  size_t bytes_ = 0;
  void* data_ = nullptr;        // weights
  uint16_t* scales_ = nullptr;  // q8 only: inside data_'s allocation
};

// y[N,OUT] = x[N,IN] @ W^T (+ bias[OUT] when bias != nullptr), overwriting y. Multi-threaded (OpenMP).
// Fast both for small N (decode, bandwidth-bound) and large N (prefill, compute-bound). bf16 rounds
// x to bf16 and q8 quantizes x to int8 per block of 32 (scale max|x|/127), for every N alike, so a
// row's result does not depend on how many rows come with it beyond the order of fp32 sums.
void packed_linear(float* y, const float* x, const PackedMatrix& w, const float* bias, int N);

// The kernel level packed_linear dispatches to: "avx512bf16", "avx512", "avx2" or "scalar".
const char* packed_kernel_level();

}  // namespace gpt::ops
