#include "tokenizer/ids_text.h"

#include <charconv>
#include <cstdint>

#include "core/error.h"

namespace gpt {

namespace {
bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Bad input is quoted back to the user; keep that quote one printable line.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("\\x{:02X}", c);
    }
  }
  if (s.size() > 40) out += "...";
  return out;
}
}  // namespace

std::vector<TokenId> parse_ids(std::string_view text) {
  std::vector<TokenId> ids;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    while (p < end && is_space(*p)) ++p;
    if (p == end) break;
    const char* q = p;
    while (q < end && !is_space(*q)) ++q;
    uint64_t v = 0;
    auto r = std::from_chars(p, q, v);
    if (r.ec != std::errc() || r.ptr != q || v > UINT32_MAX)
      fail("'{}' (item {}) is not a token id", printable(std::string_view(p, static_cast<size_t>(q - p))),
           ids.size() + 1);
    ids.push_back(static_cast<TokenId>(v));
    p = q;
  }
  return ids;
}

std::string format_ids(std::span<const TokenId> ids) {
  std::string out;
  out.reserve(ids.size() * 6);
  char buf[16];
  for (TokenId id : ids) {
    auto r = std::to_chars(buf, buf + sizeof buf, id);
    out.append(buf, r.ptr);
    out.push_back('\n');
  }
  return out;
}

}  // namespace gpt
