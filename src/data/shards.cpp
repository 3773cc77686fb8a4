#include "data/shards.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/io.h"  // MappedFile

namespace gpt::data {

TokenShard::TokenShard(const std::string& path) : path_(path) {
  map_ = std::make_unique<MappedFile>(MappedFile::open(path));
  const size_t bytes = map_->size();
  if (bytes < kShardHeaderBytes)
    fail("{}: not a token shard: {} bytes is shorter than the {}-byte header", path, bytes, kShardHeaderBytes);
  int32_t header[3];
  std::memcpy(header, map_->data(), sizeof(header));
  if (header[0] != kShardMagic)
    fail("{}: not a token shard: bad magic {} (expected {}, llm.c's format)", path, header[0], kShardMagic);
  if (header[1] != kShardVersion)
    fail("{}: unsupported token shard version {} (expected {})", path, header[1], kShardVersion);
  if (header[2] < 0) fail("{}: corrupt token shard: negative token count {}", path, header[2]);
  size_ = static_cast<size_t>(header[2]);
  const size_t want = kShardHeaderBytes + size_ * sizeof(uint16_t);
  if (bytes != want)
    fail("{}: corrupt token shard: the header says {} tokens ({} bytes) but the file has {} bytes", path, size_,
         want, bytes);
  tokens_ = reinterpret_cast<const uint16_t*>(map_->data() + kShardHeaderBytes);
}

TokenShard::TokenShard(TokenShard&&) noexcept = default;
TokenShard& TokenShard::operator=(TokenShard&&) noexcept = default;
TokenShard::~TokenShard() = default;

uint16_t TokenShard::max_token() const {
  if (max_token_ < 0) max_token_ = size_ == 0 ? 0 : *std::max_element(tokens_, tokens_ + size_);
  return static_cast<uint16_t>(max_token_);
}

std::vector<std::string> find_shards(const std::string& dir, std::string_view split) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: no such data directory", dir);
  std::vector<std::string> out;
  const std::string prefix = std::string(split) + "_";
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > prefix.size() + 4 && name.starts_with(prefix) && name.ends_with(".bin") &&
        name.find(".tmp.") == std::string::npos)
      out.push_back(e.path().string());
  }
  if (ec) fail("cannot list {}: {}", dir, ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

ShardWriter::ShardWriter(const std::string& path) : file_(path) {
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  file_.write(header, sizeof(header));
}

void ShardWriter::append(const uint16_t* tokens, size_t n) {
  file_.write(tokens, n * sizeof(uint16_t));
  count_ += n;
}

void ShardWriter::commit() {
  if (count_ > static_cast<size_t>(INT32_MAX)) fail("a token shard holds at most {} tokens", INT32_MAX);
  const int32_t count = static_cast<int32_t>(count_);
  file_.write_at(2 * sizeof(int32_t), &count, sizeof(count));
  file_.commit();
}

void write_shard(const std::string& path, const uint16_t* tokens, size_t n) {
  ShardWriter w(path);
  w.append(tokens, n);
  w.commit();
}

}  // namespace gpt::data
