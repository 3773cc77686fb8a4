// PackedMatrix (packing, unpacking) and packed_linear: the work split between threads, the
// activations converted once per call, the kernels from the table for this CPU.
#include "ops/packed.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <cblas.h>

#include "core/cpu.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/cpu/packed_kernels.h"
#include "ops/ops.h"

namespace gpt::ops {

const char* weight_type_name(WeightType t) {
  switch (t) {
    case WeightType::F32:
      return "f32";
    case WeightType::BF16:
      return "bf16";
    case WeightType::Q8:
      return "q8";
  }
  return "?";
}

WeightType parse_weight_type(std::string_view name) {
  if (name == "f32") return WeightType::F32;
  if (name == "bf16") return WeightType::BF16;
  if (name == "q8") return WeightType::Q8;
  fail("unknown weight type \"{}\" (use f32, bf16 or q8)", name);
}

namespace {

int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Index of (row r, input k) in the panel layouts of packed.h.
size_t bf16_index(int r, int k, int kp) {
  return (static_cast<size_t>(r / kPanel) * (kp / 2) + k / 2) * 2 * kPanel + (r % kPanel) * 2 + k % 2;
}
size_t q8_index(int r, int k, int kp) {
  return (static_cast<size_t>(r / kPanel) * (kp / 4) + k / 4) * 4 * kPanel + (r % kPanel) * 4 + k % 4;
}
size_t q8_scale_index(int r, int b, int kp) {
  return (static_cast<size_t>(r / kPanel) * (kp / kQ8Block) + b) * kPanel + r % kPanel;
}

// The half-precision scale of one block of weights: max|w|/127, never zero unless the block is,
// so that |w - q*d| <= d/2 holds for every weight.
uint16_t q8_block_scale(const float* w, int n) {
  float amax = 0;
  for (int k = 0; k < n; k++) {
    if (!std::isfinite(w[k])) fail("cannot quantize to q8: a weight is {}", w[k]);
    amax = std::max(amax, std::fabs(w[k]));
  }
  if (amax == 0) return 0;
  uint16_t h = f32_to_f16(amax / 127.0f);
  if ((h & 0x7fff) >= 0x7c00)
    fail("cannot quantize to q8: a weight of magnitude {} is beyond half-precision scales", amax);
  if (h == 0) h = 1;  // the smallest subnormal, 2^-24
  return h;
}

}  // namespace

PackedMatrix::PackedMatrix() = default;
PackedMatrix::~PackedMatrix() { std::free(data_); }
PackedMatrix::PackedMatrix(PackedMatrix&& o) noexcept
    : type_(o.type_),
      in_(std::exchange(o.in_, 0)),
      out_(std::exchange(o.out_, 0)),
      kp_(std::exchange(o.kp_, 0)),
      bytes_(std::exchange(o.bytes_, 0)),
      data_(std::exchange(o.data_, nullptr)),
      scales_(std::exchange(o.scales_, nullptr)) {}
PackedMatrix& PackedMatrix::operator=(PackedMatrix&& o) noexcept {
  std::swap(type_, o.type_);
  std::swap(in_, o.in_);
  std::swap(out_, o.out_);
  std::swap(kp_, o.kp_);
  std::swap(bytes_, o.bytes_);
  std::swap(data_, o.data_);
  std::swap(scales_, o.scales_);
  return *this;
}

void PackedMatrix::allocate(WeightType type, int out, int in) {
  if (out < 1 || in < 1) fail("cannot pack a {}x{} matrix", out, in);
  type_ = type;
  out_ = out;
  in_ = in;
  const size_t op = static_cast<size_t>(round_up(out, kPanel));
  size_t scale_bytes = 0;
  switch (type) {
    case WeightType::F32:
      kp_ = in;
      bytes_ = static_cast<size_t>(out) * in * sizeof(float);
      break;
    case WeightType::BF16:
      kp_ = round_up(in, kQ8Block);
      bytes_ = op * kp_ * sizeof(uint16_t);
      break;
    case WeightType::Q8:
      kp_ = round_up(in, kQ8Block);
      scale_bytes = op * (kp_ / kQ8Block) * sizeof(uint16_t);
      bytes_ = op * kp_ + scale_bytes;
      break;
  }
  const size_t alloc = (bytes_ + 63) / 64 * 64;
  data_ = std::aligned_alloc(64, alloc);
  if (!data_) throw std::bad_alloc();
  std::memset(data_, 0, alloc);  // the padding is zero weights (and, for q8, w + 128 = 128 below)
  if (type == WeightType::Q8) {
    std::memset(data_, 128, op * kp_);
    scales_ = reinterpret_cast<uint16_t*>(static_cast<uint8_t*>(data_) + op * kp_);
  }
}

PackedMatrix PackedMatrix::from_rows(const float* w, int out, int in, WeightType type) {
  PackedMatrix m;
  m.allocate(type, out, in);
  const int kp = m.kp_;
  switch (type) {
    case WeightType::F32:
      std::memcpy(m.data_, w, m.bytes_);
      break;
    case WeightType::BF16: {
      auto* d = static_cast<uint16_t*>(m.data_);
#pragma omp parallel for schedule(static) if (static_cast <size_t>(out) * in > (1 << 20))
      for (int r = 0; r < out; r++)
        for (int k = 0; k < in; k++)
          d[bf16_index(r, k, kp)] = f32_to_bf16(w[static_cast<size_t>(r) * in + k]);
      break;
    }
    case WeightType::Q8: {
      auto* d = static_cast<uint8_t*>(m.data_);
      const int nb = m.q8_blocks();
      std::string error;
#pragma omp parallel for schedule(static) if (static_cast <size_t>(out) * in > (1 << 20))
      for (int r = 0; r < out; r++) {
        const float* row = w + static_cast<size_t>(r) * in;
        for (int b = 0; b < nb; b++) {
          const int k0 = b * kQ8Block, len = std::min(kQ8Block, in - k0);
          uint16_t h;
          try {
            h = q8_block_scale(row + k0, len);
          } catch (const Error& e) {
#pragma omp critical
            error = e.what();
            h = 0;
          }
          m.scales_[q8_scale_index(r, b, kp)] = h;
          const float s = f16_to_f32(h);
          for (int k = k0; k < k0 + len; k++) {
            const float q = s > 0 ? std::clamp(std::nearbyint(row[k] / s), -127.0f, 127.0f) : 0.0f;
            d[q8_index(r, k, kp)] = static_cast<uint8_t>(static_cast<int>(q) + 128);
          }
        }
      }
      if (!error.empty()) throw Error(error);
      break;
    }
  }
  return m;
}

PackedMatrix PackedMatrix::from_conv1d(const float* w, int in, int out, WeightType type) {
  if (out < 1 || in < 1) fail("cannot pack a {}x{} matrix", in, out);
  std::vector<float> rows(static_cast<size_t>(out) * in);  // the transpose, [OUT, IN]
#pragma omp parallel for schedule(static) if (rows.size() > (1 << 20))
  for (int o = 0; o < out; o++)
    for (int k = 0; k < in; k++) rows[static_cast<size_t>(o) * in + k] = w[static_cast<size_t>(k) * out + o];
  return from_rows(rows.data(), out, in, type);
}

PackedMatrix PackedMatrix::from_bf16_rows(const uint16_t* w, int out, int in) {
  PackedMatrix m;
  m.allocate(WeightType::BF16, out, in);
  auto* d = static_cast<uint16_t*>(m.data_);
  for (int r = 0; r < out; r++)
    for (int k = 0; k < in; k++) d[bf16_index(r, k, m.kp_)] = w[static_cast<size_t>(r) * in + k];
  return m;
}

PackedMatrix PackedMatrix::from_q8_rows(const int8_t* q, const uint16_t* scales, int out, int in) {
  PackedMatrix m;
  m.allocate(WeightType::Q8, out, in);
  auto* d = static_cast<uint8_t*>(m.data_);
  const int nb = m.q8_blocks();
  for (int r = 0; r < out; r++) {
    for (int k = 0; k < in; k++) {
      const int v = q[static_cast<size_t>(r) * in + k];
      if (v == -128) fail("q8 weight row {} input {} is -128: the format uses -127..127", r, k);
      d[q8_index(r, k, m.kp_)] = static_cast<uint8_t>(v + 128);
    }
    for (int b = 0; b < nb; b++) {
      const uint16_t h = scales[static_cast<size_t>(r) * nb + b];
      if ((h & 0x7c00) == 0x7c00 || (h & 0x8000))
        fail("q8 scale of row {} block {} is not a finite non-negative number", r, b);
      m.scales_[q8_scale_index(r, b, m.kp_)] = h;
    }
  }
  return m;
}

void PackedMatrix::dequantize_row(int r, float* dst) const {
  if (r < 0 || r >= out_) fail("row {} is outside a matrix of {} rows", r, out_);
  switch (type_) {
    case WeightType::F32:
      std::memcpy(dst, static_cast<const float*>(data_) + static_cast<size_t>(r) * in_, in_ * sizeof(float));
      return;
    case WeightType::BF16: {
      const auto* d = static_cast<const uint16_t*>(data_);
      for (int k = 0; k < in_; k++) dst[k] = bf16_to_f32(d[bf16_index(r, k, kp_)]);
      return;
    }
    case WeightType::Q8: {
      const auto* d = static_cast<const uint8_t*>(data_);
      for (int k = 0; k < in_; k++)
        dst[k] = static_cast<float>(static_cast<int>(d[q8_index(r, k, kp_)]) - 128) *
                 f16_to_f32(scales_[q8_scale_index(r, k / kQ8Block, kp_)]);
      return;
    }
  }
}

void PackedMatrix::f32_rows(float* dst) const {
  if (type_ != WeightType::F32) fail("f32_rows of a {} matrix", weight_type_name(type_));
  std::memcpy(dst, data_, bytes_);
}

void PackedMatrix::bf16_rows(uint16_t* dst) const {
  if (type_ != WeightType::BF16) fail("bf16_rows of a {} matrix", weight_type_name(type_));
  const auto* d = static_cast<const uint16_t*>(data_);
  for (int r = 0; r < out_; r++)
    for (int k = 0; k < in_; k++) dst[static_cast<size_t>(r) * in_ + k] = d[bf16_index(r, k, kp_)];
}

void PackedMatrix::q8_rows(int8_t* q, uint16_t* scales) const {
  if (type_ != WeightType::Q8) fail("q8_rows of a {} matrix", weight_type_name(type_));
  const auto* d = static_cast<const uint8_t*>(data_);
  const int nb = q8_blocks();
  for (int r = 0; r < out_; r++) {
    for (int k = 0; k < in_; k++)
      q[static_cast<size_t>(r) * in_ + k] =
          static_cast<int8_t>(static_cast<int>(d[q8_index(r, k, kp_)]) - 128);
    for (int b = 0; b < nb; b++) scales[static_cast<size_t>(r) * nb + b] = scales_[q8_scale_index(r, b, kp_)];
  }
}

// ---- packed_linear -------------------------------------------------------------------------------

namespace cpu {

const PackedKernels& packed_kernels() {
  static const PackedKernels* t = [] {
    const CpuFeatures& f = gpt::cpu();
    const std::string level = f.level();
    if (level == "avx512" && f.avx512bf16 && f.avx512vnni) return &packed_avx512bf16;
    if (level == "avx512") return &packed_avx512;
    if (level == "avx2") return &packed_avx2;
    return &packed_scalar;
  }();
  return *t;
}

namespace {

// Per-thread buffers for the converted activations: they grow to the largest call and stay, so
// steady-state calls allocate nothing.
struct Scratch {
  void* p = nullptr;
  size_t size = 0;
  ~Scratch() { std::free(p); }
  void* get(size_t bytes) {
    if (bytes > size) {
      std::free(p);
      size = (bytes + 4095) / 4096 * 4096;
      p = std::aligned_alloc(64, size);
      if (!p) {
        size = 0;
        throw std::bad_alloc();
      }
    }
    return p;
  }
};
thread_local Scratch tls_scratch;

// Runs fn(begin, end) over [0, n) in chunks of whole `unit`s, about 8 per thread, handed out
// dynamically: on a shared machine a thread whose core is busy takes fewer chunks instead of
// holding everyone up at the end (a static split waits for the slowest thread).
template <typename Fn>
void for_chunks(int n, int unit, Fn fn) {
  const int nt = omp_get_num_threads();
  const int units = (n + unit - 1) / unit;
  const int per = std::max(1, units / (8 * nt));
  const int chunks = (units + per - 1) / per;
#pragma omp for schedule(dynamic, 1)
  for (int c = 0; c < chunks; c++) fn(c * per * unit, std::min(n, (c + 1) * per * unit));
}

// From this many rows on, f32 goes to the engine's sgemm (ops::gemm, with W^T as B).
constexpr int kSgemmRows = 16;

}  // namespace

void packed_linear_using(const PackedKernels& k, float* y, const float* x, const PackedMatrix& w,
                         const float* bias, int N) {
  if (N <= 0) return;
  const int in = w.in(), out = w.out(), kp = w.padded_in();
  const int panels = (out + kPanel - 1) / kPanel;
  const bool many = N >= 4;  // enough rows to convert them in parallel
  switch (w.type()) {
    case WeightType::F32: {
      const auto* wf = static_cast<const float*>(w.data());
      if (N >= kSgemmRows) {
        if (bias)
          for (int n = 0; n < N; n++)
            std::memcpy(y + static_cast<size_t>(n) * out, bias, out * sizeof(float));
        ops::gemm(false, true, N, out, in, 1.0f, x, in, wf, in, bias ? 1.0f : 0.0f, y, out);
        return;
      }
#pragma omp parallel
      {
        for_chunks(out, 4, [&](int o0, int o1) { k.f32_rows(y, out, x, N, wf, in, bias, o0, o1); });
      }
      return;
    }
    case WeightType::BF16: {
      auto* xb = static_cast<uint16_t*>(tls_scratch.get(static_cast<size_t>(N) * kp * sizeof(uint16_t)));
      const auto* wb = static_cast<const uint16_t*>(w.data());
#pragma omp parallel
      {
        if (many) {
#pragma omp for schedule(static)
          for (int n = 0; n < N; n++)
            k.round_bf16(xb + static_cast<size_t>(n) * kp, x + static_cast<size_t>(n) * in, in, kp);
        } else {
#pragma omp single
          for (int n = 0; n < N; n++)
            k.round_bf16(xb + static_cast<size_t>(n) * kp, x + static_cast<size_t>(n) * in, in, kp);
        }
        for_chunks(panels, 4,
                   [&](int p0, int p1) { k.bf16_panels(y, out, xb, N, wb, kp, bias, out, p0, p1); });
      }
      return;
    }
    case WeightType::Q8: {
      const int nb = kp / kQ8Block;
      const size_t qbytes = (static_cast<size_t>(N) * kp + 63) / 64 * 64;
      const size_t dbytes = (static_cast<size_t>(N) * nb * 4 + 63) / 64 * 64;
      auto* base = static_cast<uint8_t*>(tls_scratch.get(qbytes + 2 * dbytes));
      auto* xq = reinterpret_cast<int8_t*>(base);
      auto* xd = reinterpret_cast<float*>(base + qbytes);
      auto* xs = reinterpret_cast<int32_t*>(base + qbytes + dbytes);
      const auto* wq = static_cast<const uint8_t*>(w.data());
      auto quantize = [&](int n) {
        k.quantize_q8(xq + static_cast<size_t>(n) * kp, xd + static_cast<size_t>(n) * nb,
                      xs + static_cast<size_t>(n) * nb, x + static_cast<size_t>(n) * in, in, kp);
      };
#pragma omp parallel
      {
        if (many) {
#pragma omp for schedule(static)
          for (int n = 0; n < N; n++) quantize(n);
        } else {
#pragma omp single
          for (int n = 0; n < N; n++) quantize(n);
        }
        for_chunks(panels, 12, [&](int p0, int p1) {  // 12: whole tiles of 3 and of 4 panels
          k.q8_panels(y, out, xq, xd, xs, N, wq, w.q8_scales(), kp, bias, out, p0, p1);
        });
      }
      return;
    }
  }
}

}  // namespace cpu

void packed_linear(float* y, const float* x, const PackedMatrix& w, const float* bias, int N) {
  cpu::packed_linear_using(cpu::packed_kernels(), y, x, w, bias, N);
}

const char* packed_kernel_level() { return cpu::packed_kernels().level; }

}  // namespace gpt::ops
