// Character-level tokenizer, as in nanoGPT's Shakespeare-char experiments: the vocabulary is
// the sorted set of characters (Unicode code points) of a training text, id = rank in that set.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gpt {

class CharTokenizer final : public Tokenizer {
 public:
  // `chars` are UTF-8 characters, one each, sorted by code point, no duplicates.
  explicit CharTokenizer(std::vector<std::string> chars);

  // The vocabulary of a text: throws gpt::Error if the text is not valid UTF-8.
  static CharTokenizer from_text(std::string_view text);
  // Reads DIR/chars.json.
  static CharTokenizer load(const std::string& dir);

  std::string kind() const override { return "char"; }
  size_t vocab_size() const override { return chars_.size(); }
  // Throws gpt::Error on a character outside the vocabulary (special tokens: there are none).
  std::vector<TokenId> encode(std::string_view text, const AllowedSpecial& allowed = {},
                              int threads = 1) const override;
  std::string decode(std::span<const TokenId> ids) const override;
  std::string_view token_bytes(TokenId id) const override;
  std::vector<std::pair<std::string, TokenId>> special_tokens() const override { return {}; }
  void save(const std::string& dir) const override;  // DIR/chars.json

 private:
  std::vector<std::string> chars_;
  std::unordered_map<uint32_t, TokenId> index_;  // code point -> id
};

}  // namespace gpt
