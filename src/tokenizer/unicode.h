// UTF-8 decoding and the three character classes GPT-2's pre-tokenizer needs.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gpt {

// Letters \p{L}, numbers \p{N}, White_Space \s, and everything else (marks, punctuation,
// symbols, and every byte of invalid UTF-8).
enum class CharClass : uint8_t { Other = 0, Letter = 1, Number = 2, Space = 3 };

// Class of a Unicode scalar value (tables generated from tiktoken by tools/gen_unicode_tables.py).
CharClass char_class(uint32_t cp);

// Marker code point for a byte that does not start a valid UTF-8 sequence.
inline constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

// Decodes the UTF-8 character at p (p < end). Returns its length in bytes (1..4) and sets *cp.
// An invalid or truncated sequence, an overlong form or a surrogate decodes as one byte with
// *cp = kInvalidCodePoint, so every byte string splits into characters and round-trips.
inline int decode_utf8(const uint8_t* p, const uint8_t* end, uint32_t* cp) {
  uint8_t b0 = p[0];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  auto cont = [&](int i) { return p + i < end && (p[i] & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (cont(1)) {
      *cp = (uint32_t(b0 & 0x1F) << 6) | (p[1] & 0x3F);
      return 2;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (cont(1) && cont(2)) {
      uint32_t c = (uint32_t(b0 & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
      if (c >= 0x800 && (c < 0xD800 || c > 0xDFFF)) {
        *cp = c;
        return 3;
      }
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (cont(1) && cont(2) && cont(3)) {
      uint32_t c = (uint32_t(b0 & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) |
                   (uint32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
      if (c >= 0x10000 && c <= 0x10FFFF) {
        *cp = c;
        return 4;
      }
    }
  }
  *cp = kInvalidCodePoint;
  return 1;
}

// Appends the UTF-8 encoding of a scalar value to `out` (used by tests and the char tokenizer).
template <typename String>
void append_utf8(String& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Index of the first byte >= 0x80 in [p, p+n), or n: the fast path for ASCII text.
// Dispatched at run time (AVX-512BW, AVX2 or scalar).
size_t ascii_prefix_length(const uint8_t* p, size_t n);

}  // namespace gpt
