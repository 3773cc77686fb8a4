// Token shards in llm.c's format, so data interchanges with llm.c and nanoGPT-style tools:
//   a header of 256 int32: [0] magic 20240520, [1] version 1, [2] token count; then the tokens
//   as uint16 (little-endian). A dataset directory holds train_NNNNNN.bin and val_NNNNNN.bin.
// See docs/data-preparation.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/io.h"

namespace gpt {
class MappedFile;
}

namespace gpt::data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderInts = 256;
inline constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);

// A shard, memory-mapped and validated on open: magic, version, and a file length that matches
// the token count. Errors name the path and say what is wrong.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);
  TokenShard(TokenShard&&) noexcept;
  TokenShard& operator=(TokenShard&&) noexcept;
  ~TokenShard();

  const std::string& path() const { return path_; }
  size_t size() const { return size_; }  // tokens
  const uint16_t* tokens() const { return tokens_; }
  // The largest token id in the shard (computed on first call, then cached).
  uint16_t max_token() const;

 private:
  std::string path_;
  std::unique_ptr<MappedFile> map_;
  const uint16_t* tokens_ = nullptr;
  size_t size_ = 0;
  mutable int max_token_ = -1;
};

// The shards of one split ("train" or "val") in `dir`: DIR/SPLIT_*.bin in name order. Empty when
// there are none (the caller decides whether that is an error). Throws if `dir` is not a directory.
std::vector<std::string> find_shards(const std::string& dir, std::string_view split);

// Writes one shard atomically, streamed: tokens are appended, commit() patches the header's token
// count and renames the file into place. Destroyed without commit(), nothing appears.
class ShardWriter {
 public:
  explicit ShardWriter(const std::string& path);
  void append(const uint16_t* tokens, size_t n);
  size_t size() const { return count_; }
  void commit();

 private:
  AtomicFileWriter file_;
  size_t count_ = 0;
};

// The whole shard in one call.
void write_shard(const std::string& path, const uint16_t* tokens, size_t n);

}  // namespace gpt::data
