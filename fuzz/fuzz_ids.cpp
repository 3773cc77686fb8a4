// libFuzzer: the id text formats, the list `gpt detokenize` reads (then decoding those ids) and the
// matrix `gpt logits` reads, and the ID:BIAS list of `gpt generate --logit-bias`.
#include <cmath>
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
  try {
    for (const auto& [id, bias] : gpt::parse_id_biases(std::string_view(reinterpret_cast<const char*>(data), size)))
      if (!std::isfinite(bias)) __builtin_trap();
  } catch (const gpt::Error&) {
  }
  try {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const gpt::IdMatrix m = gpt::parse_id_matrix(text, "fuzz", size % 2 == 0);
    if (m.values.size() != static_cast<size_t>(m.rows) * m.cols) __builtin_trap();
  } catch (const gpt::Error&) {
  }
  return 0;
}
