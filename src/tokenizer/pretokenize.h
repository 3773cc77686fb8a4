// GPT-2's pre-tokenizer: the split that tiktoken does with the regex
//
//   '(?:[sdmt]|ll|ve|re) | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
//
// written out as a hand-made scanner (no regex engine). BPE then runs inside each piece only,
// so merges never cross a word, number or punctuation boundary. See docs/bpe.md.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "tokenizer/unicode.h"

namespace gpt {

namespace detail {
struct AsciiClasses {
  std::array<CharClass, 128> cls{};
  AsciiClasses() {
    for (uint32_t c = 0; c < 128; ++c) cls[c] = char_class(c);
  }
};
inline const AsciiClasses& ascii_classes() {
  static const AsciiClasses table;
  return table;
}

// Class and byte length of the character at s[i]. kAscii: the caller knows s[0, n) is ASCII.
template <bool kAscii = false>
inline int char_at(const uint8_t* s, size_t n, size_t i, CharClass* cls) {
  uint8_t b = s[i];
  if (kAscii || b < 0x80) {
    *cls = ascii_classes().cls[b & 0x7F];
    return 1;
  }
  uint32_t cp;
  int len = decode_utf8(s + i, s + n, &cp);
  *cls = cp == kInvalidCodePoint ? CharClass::Other : char_class(cp);
  return len;
}

// End of the run of characters of class `cls` that continues at i.
template <bool kAscii = false>
inline size_t run_end(const uint8_t* s, size_t n, size_t i, CharClass cls) {
  const auto& ascii = ascii_classes().cls;
  while (i < n) {
    uint8_t b = s[i];
    if (kAscii || b < 0x80) {
      if (ascii[b & 0x7F] != cls) break;
      ++i;
      continue;
    }
    CharClass c;
    int len = char_at(s, n, i, &c);
    if (c != cls) break;
    i += static_cast<size_t>(len);
  }
  return i;
}
}  // namespace detail

// End (exclusive) of the pre-token that starts at s[i], i < n. With kAscii the caller promises
// that s[0, n) is all ASCII, which skips every UTF-8 check (see encode_ordinary in bpe.cpp).
template <bool kAscii = false>
inline size_t next_piece_end(const uint8_t* s, size_t n, size_t i) {
  const auto char_at = detail::char_at<kAscii>;
  const auto run_end = detail::run_end<kAscii>;
  const uint8_t c = s[i];

  // 1. Contractions, case-sensitive as in GPT-2: 's 't 'd 'm 'll 've 're.
  if (c == '\'' && i + 1 < n) {
    const uint8_t c1 = s[i + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'd' || c1 == 'm') return i + 2;
    if (i + 2 < n) {
      const uint8_t c2 = s[i + 2];
      if ((c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e')) return i + 3;
    }
  }

  // 2-4. An optional single space, then a run of letters, of numbers, or of "other" characters.
  CharClass cls;
  if (c == ' ') {
    if (i + 1 < n) {
      int len = char_at(s, n, i + 1, &cls);
      if (cls != CharClass::Space) return run_end(s, n, i + 1 + static_cast<size_t>(len), cls);
    }
  } else {
    int len = char_at(s, n, i, &cls);
    if (cls != CharClass::Space) return run_end(s, n, i + static_cast<size_t>(len), cls);
  }

  // 5-6. Whitespace. A run that reaches the end of the text is one piece. Otherwise the last
  // whitespace character is left for the next piece (it becomes the leading space of " word"),
  // unless the run is a single character, which is then a piece of its own.
  size_t k = i, last = i;
  while (k < n) {
    int len = char_at(s, n, k, &cls);
    if (cls != CharClass::Space) break;
    last = k;
    k += static_cast<size_t>(len);
  }
  if (k == n) return n;
  return last > i ? last : k;
}

// Calls emit(begin, end) for every pre-token of s[0, n).
template <typename Emit>
void pretokenize(const uint8_t* s, size_t n, Emit&& emit) {
  size_t i = 0;
  while (i < n) {
    size_t e = next_piece_end(s, n, i);
    emit(i, e);
    i = e;
  }
}

// A position >= from where the text can be cut without changing any pre-token: a whitespace
// byte right after a printable non-space ASCII byte (no pre-token spans such a pair, and no
// pre-token before it looks past it). Returns n if there is none.
inline size_t safe_split_point(const uint8_t* s, size_t n, size_t from) {
  for (size_t b = from < 1 ? 1 : from; b < n; ++b) {
    uint8_t c = s[b];
    if ((c == ' ' || c == '\n' || c == '\t' || c == '\r') && s[b - 1] > 0x20 && s[b - 1] < 0x7F) return b;
  }
  return n;
}

}  // namespace gpt
