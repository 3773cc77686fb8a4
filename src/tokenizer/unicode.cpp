#include "tokenizer/unicode.h"

#include <immintrin.h>

#include "core/cpu.h"

namespace gpt {

namespace {
#include "tokenizer/unicode_tables.inc"

size_t ascii_prefix_scalar(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, p + i, 8);
    if (w & 0x8080808080808080ull) break;
  }
  while (i < n && p[i] < 0x80) ++i;
  return i;
}

__attribute__((target("avx2"))) size_t ascii_prefix_avx2(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    uint32_t m = static_cast<uint32_t>(_mm256_movemask_epi8(v));
    if (m) return i + static_cast<size_t>(__builtin_ctz(m));
  }
  return i + ascii_prefix_scalar(p + i, n - i);
}

__attribute__((target("avx512f,avx512bw"))) size_t ascii_prefix_avx512(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i v = _mm512_loadu_si512(p + i);
    uint64_t m = _mm512_movepi8_mask(v);
    if (m) return i + static_cast<size_t>(__builtin_ctzll(m));
  }
  return i + ascii_prefix_scalar(p + i, n - i);
}

using AsciiPrefixFn = size_t (*)(const uint8_t*, size_t);
AsciiPrefixFn pick_ascii_prefix() {
  const std::string level = cpu().level();
  if (level == "avx512") return ascii_prefix_avx512;
  if (level == "avx2") return ascii_prefix_avx2;
  return ascii_prefix_scalar;
}
}  // namespace

CharClass char_class(uint32_t cp) {
  if (cp >= 0x110000) return CharClass::Other;
  uint16_t block = kUnicodeStage1[cp >> 8];
  uint32_t lo = cp & 0xFF;
  return static_cast<CharClass>((kUnicodeStage2[block][lo >> 2] >> ((lo & 3) * 2)) & 3);
}

size_t ascii_prefix_length(const uint8_t* p, size_t n) {
  static const AsciiPrefixFn fn = pick_ascii_prefix();
  return fn(p, n);
}

}  // namespace gpt
