// Token ids as text: the format of `gpt tokenize` (decimal, one per line) and `gpt detokenize`
// (decimal, any whitespace between ids).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gpt {

// One decimal token id, the whole of `text` (no sign, no spaces, at most 2^32 - 1); nullopt otherwise.
std::optional<TokenId> parse_token_id(std::string_view text);

// Parses whitespace-separated decimal ids; throws gpt::Error naming the first bad item.
std::vector<TokenId> parse_ids(std::string_view text);

// `gpt generate --logit-bias`: "ID:BIAS" pairs separated by commas (e.g. "50256:-100,198:2.5"), each
// bias a finite number. Throws gpt::Error naming the first bad pair.
std::vector<std::pair<TokenId, float>> parse_id_biases(std::string_view text);

// "1\n2\n3\n"
std::string format_ids(std::span<const TokenId> ids);

// A matrix of ids as `gpt logits` reads it: one row per non-blank line, ids separated by spaces or
// tabs, every row the same length. With allow_ignore, -1 (a target that is not scored) is allowed
// too. Throws gpt::Error naming `name`, the line and the bad item.
struct IdMatrix {
  int rows = 0, cols = 0;
  std::vector<int64_t> values;  // [rows, cols] row-major
};
IdMatrix parse_id_matrix(std::string_view text, std::string_view name, bool allow_ignore);

}  // namespace gpt
