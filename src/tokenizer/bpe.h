// GPT-2 byte-level BPE, exact to tiktoken's "gpt2" encoding.
//
// Encoding a text: (1) split it into pre-tokens (pretokenize.h); (2) start each pre-token as
// one token per byte; (3) repeatedly merge the adjacent pair whose merged bytes have the lowest
// merge rank (leftmost on ties) until no adjacent pair can merge. See docs/bpe.md.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/hash.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

class BpeTokenizer final : public Tokenizer {
 public:
  // tokens[id] = the bytes of token id ("" where the vocabulary has no such id); merges in rank
  // order, each the two byte strings that merge. Throws gpt::Error if they are inconsistent.
  BpeTokenizer(std::vector<std::string> tokens, std::vector<std::pair<std::string, std::string>> merges);
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  std::string kind() const override { return "bpe"; }
  size_t vocab_size() const override { return tokens_.size(); }
  std::vector<TokenId> encode(std::string_view text, const AllowedSpecial& allowed = {},
                              int threads = 1) const override;
  std::string decode(std::span<const TokenId> ids) const override;
  std::string_view token_bytes(TokenId id) const override;
  std::vector<std::pair<std::string, TokenId>> special_tokens() const override { return specials_; }
  void save(const std::string& dir) const override;

  // Appends the ids of `text` treated as ordinary text (no special tokens), single-threaded.
  void encode_ordinary(std::string_view text, std::vector<TokenId>& out) const;
  // The BPE of one pre-token, without the cache (exposed for tests).
  void encode_piece_uncached(std::string_view piece, std::vector<TokenId>& out) const;
  // The same through the long-piece merge loop whatever the length (for tests).
  void encode_piece_linear(std::string_view piece, std::vector<TokenId>& out) const;
  // Pieces longer than this merge with a bucket queue (linear) instead of a heap (n log n, but
  // faster while it fits in the cache).
  static constexpr size_t kLongPiece = 16384;
  // Candidate merges handled (pushed, taken, sorted) by this thread's last piece over kLongPiece
  // bytes: linear in its length (for the tests).
  static uint64_t last_merge_work();

  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

 private:
  struct Merge {
    uint32_t rank;
    TokenId id;
  };
  static uint64_t pair_key(TokenId a, TokenId b) { return (uint64_t(a) << 32) | b; }
  void encode_piece(const uint8_t* p, size_t n, std::vector<TokenId>& out) const;
  void merge_small(const uint8_t* p, size_t n, std::vector<TokenId>& out) const;
  void merge_large(const uint8_t* p, size_t n, std::vector<TokenId>& out) const;
  void merge_long(const uint8_t* p, size_t n, std::vector<TokenId>& out) const;

  std::vector<std::string> tokens_;
  std::vector<uint8_t> present_;
  std::vector<std::pair<std::string, std::string>> merges_;
  std::vector<std::pair<std::string, TokenId>> specials_;
  TokenIndex mergeable_;  // bytes -> id, for tokens that BPE can produce
  U64Map<Merge> pairs_;   // (left id, right id) -> rank and id of their concatenation
  std::array<TokenId, 256> byte_token_{};
  uint64_t instance_ = 0;  // tells per-thread piece caches which tokenizer they belong to
};

}  // namespace gpt
