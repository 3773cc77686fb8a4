// libFuzzer: llm.c token shards. Any bytes either open as a shard whose header, length and
// tokens agree, or are refused with gpt::Error. The reader maps a file, so each input is written
// to a scratch file first.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

#include "core/error.h"
#include "data/shards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    std::atexit([] { ::unlink(("/tmp/fuzz_shard." + std::to_string(::getpid()) + ".bin").c_str()); });
    return "/tmp/fuzz_shard." + std::to_string(::getpid()) + ".bin";
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  try {
    gpt::data::TokenShard shard(path);
    // Accepted: the header must say exactly what the file holds.
    int32_t header[3];
    if (size < gpt::data::kShardHeaderBytes) std::abort();
    std::memcpy(header, data, sizeof(header));
    if (header[0] != gpt::data::kShardMagic || header[1] != gpt::data::kShardVersion) std::abort();
    if (header[2] < 0 || shard.size() != static_cast<size_t>(header[2])) std::abort();
    if (gpt::data::kShardHeaderBytes + 2 * shard.size() != size) std::abort();
    uint16_t max = 0;
    for (size_t i = 0; i < shard.size(); ++i) {
      uint16_t t;
      std::memcpy(&t, data + gpt::data::kShardHeaderBytes + 2 * i, 2);
      if (shard.tokens()[i] != t) std::abort();
      if (t > max) max = t;
    }
    if (shard.max_token() != max) std::abort();
  } catch (const gpt::Error&) {
  }
  return 0;
}
