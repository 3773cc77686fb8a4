// A prepared dataset directory: llm.c token shards (data/shards.h) plus DIR/dataset.json, which
// says how the text was tokenized, and the vocabulary files beside it. `gpt prepare` writes one;
// the trainer reads it back with read_dataset_info / dataset_tokenizer. See docs/data-preparation.md.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gpt::data {

struct DatasetInfo {
  std::string tokenizer_kind;  // "gpt2" (bundled), "bpe" (vocabulary files in DIR) or "char" (DIR/chars.json)
  size_t vocab_size = 0;       // every token id in the shards is below this
  std::optional<TokenId> eot;  // the vocabulary's <|endoftext|>, if it has one
  uint64_t documents = 0;      // 0 when unknown (no dataset.json)
  uint64_t train_tokens = 0, val_tokens = 0;
  size_t train_shards = 0, val_shards = 0;
  double val_fraction = 0;  // as asked for; the split itself is by whole documents or bytes
  uint64_t bytes = 0;       // input bytes (0 when unknown)
  std::vector<std::string> inputs;
  bool has_metadata = false;  // false: a plain llm.c directory without dataset.json
};

// Reads DIR/dataset.json if present (and checks its shard counts against the directory); plain
// llm.c shard directories without it are taken as GPT-2 tokenized, with counts from the shard
// headers. Throws gpt::Error if DIR holds neither.
DatasetInfo read_dataset_info(const std::string& dir);

// The tokenizer the shards were made with (the bundled GPT-2 one when DIR has no dataset.json).
std::shared_ptr<const Tokenizer> dataset_tokenizer(const std::string& dir);

// The name of the metadata file inside a dataset directory.
inline constexpr const char* kDatasetJson = "dataset.json";

}  // namespace gpt::data
