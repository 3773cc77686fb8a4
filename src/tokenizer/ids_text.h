// Token ids as text: the format of `gpt tokenize` (decimal, one per line) and `gpt detokenize`
// (decimal, any whitespace between ids).
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gpt {

// Parses whitespace-separated decimal ids; throws gpt::Error naming the first bad item.
std::vector<TokenId> parse_ids(std::string_view text);

// "1\n2\n3\n"
std::string format_ids(std::span<const TokenId> ids);

}  // namespace gpt
