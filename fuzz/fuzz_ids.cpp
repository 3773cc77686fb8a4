// libFuzzer: the id text format read by `gpt detokenize`, then decoding those ids.
#include <string_view>

#include "core/error.h"
#include "tokenizer/ids_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tok = gpt::gpt2_tokenizer();
  try {
    auto ids = gpt::parse_ids(std::string_view(reinterpret_cast<const char*>(data), size));
    tok->decode(ids);
  } catch (const gpt::Error&) {
  }
  return 0;
}
