// The tokenizer interface: text (bytes) <-> token ids. Two implementations: GPT-2's byte-level
// BPE (tokenizer/bpe.h) and a character-level vocabulary (tokenizer/char_tokenizer.h).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gpt {

using TokenId = uint32_t;

// Which special tokens (such as <|endoftext|>) encode() recognises in the text. Anything not
// allowed is encoded as ordinary text, character by character, like tiktoken's encode_ordinary.
struct AllowedSpecial {
  bool all = false;
  std::vector<std::string> names;
  static AllowedSpecial none() { return {}; }
  static AllowedSpecial everything() { return {true, {}}; }
  bool allows(std::string_view name) const;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual std::string kind() const = 0;  // "bpe" or "char"
  // One past the largest id (ids may have holes in unusual vocabularies).
  virtual size_t vocab_size() const = 0;

  // Encodes `text` (any bytes) into ids; `threads` > 1 splits big texts into chunks encoded in
  // parallel, with results identical to the single-threaded encoding.
  virtual std::vector<TokenId> encode(std::string_view text, const AllowedSpecial& allowed = {},
                                      int threads = 1) const = 0;
  // Bytes of the ids, concatenated. Throws gpt::Error on an id the vocabulary does not have.
  virtual std::string decode(std::span<const TokenId> ids) const = 0;
  // The bytes of one token (throws on an unknown id).
  virtual std::string_view token_bytes(TokenId id) const = 0;

  // Special tokens of this vocabulary (name -> id), e.g. {"<|endoftext|>": 50256}.
  virtual std::vector<std::pair<std::string, TokenId>> special_tokens() const = 0;
  // The end-of-text token if the vocabulary has one.
  std::optional<TokenId> eot_token() const;

  // Writes the vocabulary files into `dir` (created if needed), each written atomically.
  virtual void save(const std::string& dir) const = 0;
};

// The GPT-2 vocabulary compiled into the binary (data/gpt2), loaded once and shared.
std::shared_ptr<const Tokenizer> gpt2_tokenizer();

// Loads a vocabulary directory: encoder.json + vocab.bpe (OpenAI), vocab.json + merges.txt or
// tokenizer.json (Hugging Face), or chars.json (character level), in that order of preference.
// Throws gpt::Error with a clear reason.
std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& dir);

// The CLI's --vocab / --tokenizer choice: "" or "gpt2" for the bundled GPT-2 vocabulary,
// "char:DIR" for a character vocabulary, "bpe:DIR" or a plain DIR for a BPE vocabulary.
std::shared_ptr<const Tokenizer> tokenizer_from_spec(const std::string& spec);

}  // namespace gpt
