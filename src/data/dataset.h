// A prepared dataset directory: llm.c token shards (data/shards.h) plus DIR/dataset.json, which
// says how the text was tokenized, and the vocabulary files beside it. `gpt prepare` writes one;
// the trainer reads it back with read_dataset_info / dataset_tokenizer. See docs/data-preparation.md.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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

// ---- gpt prepare: text -> shards ----------------------------------------------------------------

struct PrepareProgress {
  const char* phase;  // "scan" (a first pass: JSONL documents, the character alphabet) or "tokenize"
  uint64_t bytes_done, bytes_total;
  uint64_t tokens;  // written so far (tokenize phase)
};

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files (one document each) and .jsonl files (one per line)
  std::string out_dir;
  // "gpt2" (bundled), "char" (a character vocabulary built from the input), or any spec that
  // tokenizer_from_spec takes (a BPE vocabulary directory, bpe:DIR, char:DIR).
  std::string tokenizer = "gpt2";
  double val_fraction = 0.1;            // 0 <= f < 1
  uint64_t shard_tokens = 100'000'000;  // tokens per shard, as llm.c's FineWeb shards
  std::string jsonl_field = "text";
  int threads = 0;                       // 0: num_threads()
  size_t chunk_bytes = size_t(8) << 20;  // text read and encoded per step (memory is a few times this)
  bool force = false;                    // replace a dataset already in out_dir
  std::function<void(const PrepareProgress&)> on_progress;
};

// Tokenizes the inputs into out_dir/train_NNNNNN.bin, val_NNNNNN.bin, the vocabulary files and,
// last, dataset.json. Nothing appears in out_dir unless it all succeeds. The rules (documents,
// <|endoftext|>, the train/val split) are in docs/data-preparation.md.
DatasetInfo prepare_dataset(const PrepareOptions& opt);

// Where a single document's val part begins: the first newline at or after `from` that follows a
// printable ASCII character (within `window` bytes), else the first such whitespace, else the
// first character boundary. Cutting there changes no GPT-2 pre-token, so the two parts tokenize
// exactly as the whole text does.
size_t val_cut(std::string_view text, size_t from, size_t window = size_t(1) << 20);

// The last place in `text` where streaming may cut (whitespace after a printable ASCII
// character, as BpeTokenizer's own parallel chunks); 0 if there is none.
size_t last_safe_cut(std::string_view text);

}  // namespace gpt::data
