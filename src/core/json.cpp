#include "core/json.h"

#include <algorithm>

#include "core/error.h"

namespace gpt {

size_t json_depth_exceeded(std::string_view s, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // (below zero only in text the parser rejects before it gets here)
    }
  }
  return std::string_view::npos;
}

namespace {

// A library message can quote a whole (long, binary) token: keep the phrase one short line.
std::string short_text(std::string s) {
  constexpr size_t kMax = 160;
  if (s.size() > kMax) {
    s.resize(kMax);
    // Do not cut a UTF-8 sequence in half.
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
    if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
    s += "...";
  }
  return s;
}

}  // namespace

std::optional<nlohmann::json> try_parse_json(std::string_view text, std::string* detail,
                                             const nlohmann::json::parser_callback_t& cb, int max_depth) {
  const size_t deep = json_depth_exceeded(text, max_depth);
  if (deep != std::string_view::npos) {
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + deep, '\n'));
    const size_t bol = text.rfind('\n', deep);
    const size_t column = deep - (bol == std::string_view::npos ? 0 : bol + 1) + 1;
    if (detail)
      *detail = fmt::format("nested deeper than {} levels, at line {}, column {}", max_depth, line, column);
    return std::nullopt;
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    // parse_error (syntax, invalid UTF-8 in a string) and out_of_range (a number beyond double's
    // range: "number overflow parsing '1e999'") alike.
    if (detail) *detail = short_text(json_error_text(e));
    return std::nullopt;
  }
}

nlohmann::json parse_json(std::string_view text, std::string_view what,
                          const nlohmann::json::parser_callback_t& cb, int max_depth) {
  std::string detail;
  std::optional<nlohmann::json> j = try_parse_json(text, &detail, cb, max_depth);
  if (!j) fail("{}: not valid JSON ({})", what, detail);
  return std::move(*j);
}

std::string json_excerpt(const nlohmann::json& v, size_t max) {
  if (v.is_object()) return fmt::format("an object of {} key{}", v.size(), v.size() == 1 ? "" : "s");
  if (v.is_array()) return fmt::format("an array of {} value{}", v.size(), v.size() == 1 ? "" : "s");
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > max) {
    s.resize(max);
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
    if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
    s += "...";
  }
  return s;
}

}  // namespace gpt
