#include "tokenizer/ids_text.h"

#include <charconv>
#include <cmath>
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

std::optional<TokenId> parse_token_id(std::string_view text) {
  uint64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size() || v > UINT32_MAX)
    return std::nullopt;
  return static_cast<TokenId>(v);
}

std::vector<TokenId> parse_ids(std::string_view text) {
  std::vector<TokenId> ids;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    while (p < end && is_space(*p)) ++p;
    if (p == end) break;
    const char* q = p;
    while (q < end && !is_space(*q)) ++q;
    const std::string_view item(p, static_cast<size_t>(q - p));
    const std::optional<TokenId> id = parse_token_id(item);
    if (!id) fail("'{}' (item {}) is not a token id", printable(item), ids.size() + 1);
    ids.push_back(*id);
    p = q;
  }
  return ids;
}

std::vector<std::pair<TokenId, float>> parse_id_biases(std::string_view text) {
  std::vector<std::pair<TokenId, float>> out;
  size_t at = 0;
  while (at <= text.size()) {
    size_t comma = text.find(',', at);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view pair = text.substr(at, comma - at);
    const size_t colon = pair.find(':');
    std::optional<TokenId> id;
    float bias = 0.0f;
    if (colon != std::string_view::npos) {
      id = parse_token_id(pair.substr(0, colon));
      const auto r = std::from_chars(pair.data() + colon + 1, pair.data() + pair.size(), bias);
      if (r.ec != std::errc() || r.ptr != pair.data() + pair.size() || !std::isfinite(bias)) id.reset();
    }
    if (!id) fail("'{}' (pair {}) is not ID:BIAS, e.g. 50256:-100", printable(pair), out.size() + 1);
    out.emplace_back(*id, bias);
    at = comma + 1;
  }
  return out;
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

IdMatrix parse_id_matrix(std::string_view text, std::string_view name, bool allow_ignore) {
  IdMatrix m;
  m.cols = -1;
  size_t line_start = 0;
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    const std::string_view line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    int n = 0;
    size_t p = 0;
    while (p < line.size()) {
      while (p < line.size() && blank(line[p])) p++;
      if (p == line.size()) break;
      size_t q = p;
      while (q < line.size() && !blank(line[q])) q++;
      int64_t v = 0;
      auto r = std::from_chars(line.data() + p, line.data() + q, v);
      if (r.ec != std::errc() || r.ptr != line.data() + q || v > 0xFFFFFFFFLL || (v < 0 && !(allow_ignore && v == -1)))
        fail("{}: line {}: '{}' is not a token id{}", name, m.rows + 1, printable(line.substr(p, q - p)),
             allow_ignore ? " (or -1)" : "");
      m.values.push_back(v);
      n++;
      p = q;
    }
    if (m.cols >= 0 && n != m.cols)
      fail("{}: line {} has {} ids, line 1 has {}: every row needs the same length", name, m.rows + 1, n, m.cols);
    m.cols = n;
    if (++m.rows > (1 << 30)) fail("{}: more than 2^30 rows", name);
  }
  if (m.rows == 0) fail("{}: no token ids", name);
  return m;
}

}  // namespace gpt
