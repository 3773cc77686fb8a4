// libFuzzer: vocabulary files. The input is "encoder.json bytes \0 merges bytes"; parsing and
// building a tokenizer must either work or throw gpt::Error, never crash or hang.
#include <cstring>
#include <string>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/vocab_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string json = input.substr(0, nul);
  std::string merges = nul == std::string::npos ? "" : input.substr(nul + 1);
  try {
    auto tokens = gpt::parse_vocab_json(json, "fuzz.json");
    auto merge_list = gpt::parse_merges(merges, "fuzz.bpe");
    if (tokens.size() > 100000) return 0;  // keep each run small
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    gpt::BpeTokenizer tok(std::move(tokens), std::move(merge_list));
    auto ids = tok.encode("fuzz it's 123 \xE4\xB8\xAD!");
    if (tok.decode(ids) != "fuzz it's 123 \xE4\xB8\xAD!") std::abort();
  } catch (const gpt::Error&) {
  }
  return 0;
}
