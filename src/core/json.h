// The one way the engine reads JSON text: every file, record, line and request body goes through
// parse_json (or try_parse_json), never nlohmann::json::parse directly.
//
// It adds what the library leaves to its callers:
//  - a nesting limit, checked by a linear pre-scan before anything is built: the library parses
//    deep input fine, but everything that walks the value afterwards (dump(), copies, comparisons)
//    recurses once per level, and a few hundred thousand levels overflow the stack;
//  - numbers beyond double's range (1e999) are bad input like a syntax error, not another
//    exception type;
//  - one-line messages without the library's "[json.exception.parse_error.101]" tags.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace gpt {

// Deeper than any file or request we read legitimately is (tokenizer.json: 4; records: a few).
inline constexpr int kMaxJsonDepth = 256;

// The byte offset of the bracket that opens level max_depth + 1 of arrays and objects, scanning
// text as JSON lexes it (brackets inside strings do not count); npos if none does. Linear, no
// allocation. Sound for any text: the parser cannot reach a level this scan does not see.
size_t json_depth_exceeded(std::string_view text, int max_depth = kMaxJsonDepth);

// The value of text, or nullopt and in *detail why not, as a short phrase that callers put in
// parentheses after their own "not valid JSON" ("line 1, column 2: syntax error while parsing
// value - invalid literal; last read: 'x'", "number overflow parsing '1e999'", "nested deeper than
// 256 levels, at line 1, column 257"). `cb`, if given, is the library's parser callback.
std::optional<nlohmann::json> try_parse_json(std::string_view text, std::string* detail,
                                             const nlohmann::json::parser_callback_t& cb = nullptr,
                                             int max_depth = kMaxJsonDepth);

// The value of text, or gpt::Error "WHAT: not valid JSON (DETAIL)" (WHAT names the file, line or
// request body).
nlohmann::json parse_json(std::string_view text, std::string_view what,
                          const nlohmann::json::parser_callback_t& cb = nullptr,
                          int max_depth = kMaxJsonDepth);

// A short quote of a value for a message: a scalar as JSON (invalid UTF-8 replaced, cut at about
// `max` bytes), a container by its kind and size ("an array of 3 values"); nothing nested is
// printed, and nothing here throws the library's exceptions.
std::string json_excerpt(const nlohmann::json& v, size_t max = 40);

}  // namespace gpt
