#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace gpt {

namespace {
// Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, DEL,
// NBSP, soft hyphen ...) are given the code points 256, 257, ... in byte order.
struct Table {
  std::array<uint32_t, 256> to_unicode{};
  std::array<int16_t, 512> from_unicode{};
  Table() {
    from_unicode.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_unicode[b] = printable ? static_cast<uint32_t>(b) : next++;
      from_unicode[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};
const Table& table() {
  static const Table t;
  return t;
}
}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return table().to_unicode[b]; }

std::string bytes_to_vocab_text(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, table().to_unicode[b]);
  return out;
}

bool vocab_text_to_bytes(std::string_view text, std::string* out) {
  out->clear();
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    uint32_t cp;
    p += decode_utf8(p, end, &cp);
    if (cp >= 512 || table().from_unicode[cp] < 0) return false;
    out->push_back(static_cast<char>(table().from_unicode[cp]));
  }
  return true;
}

}  // namespace gpt
