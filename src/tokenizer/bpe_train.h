// Learning a byte-level BPE vocabulary from text, the way GPT-2's was made: pre-tokenize with
// GPT-2's split, start from the 256 bytes, and repeatedly merge the most frequent adjacent pair.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"

namespace gpt {

struct BpeTrainOptions {
  size_t vocab_size = 4096;                 // including the 256 bytes and the special tokens
  uint64_t min_frequency = 2;               // stop when the best pair is rarer than this
  std::vector<std::string> special_tokens;  // appended after the merges, e.g. "<|endoftext|>"
  int threads = 1;                          // for counting the pre-tokens
  // Called now and then with (merges done, merges wanted).
  std::function<void(size_t, size_t)> progress;
};

struct BpeTrainResult {
  std::vector<std::string> tokens;  // id -> bytes
  std::vector<std::pair<std::string, std::string>> merges;
  size_t distinct_pretokens = 0;
};

// Learns merges from the concatenation of `texts`. Occurrences of the special tokens are cut out
// of the text first, so no merge ever spans them.
//
// The algorithm is the incremental one: pair counts are kept in a table with a max-heap over
// them, and each merge only revisits the words that contain the merged pair. Ties between
// equally frequent pairs go to the pair whose bytes sort first, so results are reproducible.
BpeTrainResult train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt);

}  // namespace gpt
