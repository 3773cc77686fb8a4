// libFuzzer: any bytes must encode, and decode back to themselves, with and without special
// tokens. (Parallel == sequential is a unit test: threads here would slow the fuzzer 20x.)
#include <cstdlib>
#include <string_view>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tok = gpt::gpt2_tokenizer();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ids = tok->encode(text);
  if (tok->decode(ids) != text) std::abort();
  auto special = tok->encode(text, gpt::AllowedSpecial::everything());
  if (tok->decode(special) != text) std::abort();
  return 0;
}
