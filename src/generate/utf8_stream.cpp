#include "generate/utf8_stream.h"

namespace gpt {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Bytes a sequence starting with lead byte b has in all (0: b cannot start one).
int sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;  // a continuation byte, an overlong lead (C0, C1) or beyond U+10FFFF (F5..FF)
}

// Whether b may follow `held` (lead byte first): the second byte's range excludes overlong
// forms, surrogates (ED A0..) and code points above U+10FFFF.
bool continues(const std::string& held, unsigned char b) {
  if (held.size() == 1) {
    switch (static_cast<unsigned char>(held[0])) {
      case 0xE0:
        return b >= 0xA0 && b <= 0xBF;
      case 0xED:
        return b >= 0x80 && b <= 0x9F;
      case 0xF0:
        return b >= 0x90 && b <= 0xBF;
      case 0xF4:
        return b >= 0x80 && b <= 0x8F;
      default:
        break;
    }
  }
  return b >= 0x80 && b <= 0xBF;
}

}  // namespace

void Utf8Stream::push_byte(unsigned char b, std::string& out) {
  if (!held_.empty()) {
    if (continues(held_, b)) {
      held_.push_back(static_cast<char>(b));
      if (--need_ == 0) {
        out += held_;
        held_.clear();
      }
      return;
    }
    // The held bytes are a maximal invalid subpart: one replacement, then b starts afresh.
    out += kReplacement;
    held_.clear();
    need_ = 0;
  }
  const int n = sequence_length(b);
  if (n == 1) {
    out.push_back(static_cast<char>(b));
  } else if (n == 0) {
    out += kReplacement;
  } else {
    held_.push_back(static_cast<char>(b));
    need_ = n - 1;
  }
}

void Utf8Stream::push(std::string_view bytes, std::string& out) {
  for (char c : bytes) push_byte(static_cast<unsigned char>(c), out);
}

void Utf8Stream::finish(std::string& out) {
  if (!held_.empty()) out += kReplacement;
  held_.clear();
  need_ = 0;
}

std::string sanitize_utf8(std::string_view bytes) {
  Utf8Stream s;
  std::string out;
  s.push(bytes, out);
  s.finish(out);
  return out;
}

}  // namespace gpt
