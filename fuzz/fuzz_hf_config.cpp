// libFuzzer: config.json. Parsing any bytes either works or throws gpt::Error; a config it
// accepts is valid, and writing it and reading it back gives the same config.
#include <cstdlib>
#include <memory>
#include <string_view>

#include "core/error.h"
#include "io/hf_config.h"
#include "tokenizer/char_tokenizer.h"

namespace {
bool same(const gpt::ModelConfig& a, const gpt::ModelConfig& b) {
  return a.preset == b.preset && a.n_layer == b.n_layer && a.n_head == b.n_head && a.n_embd == b.n_embd &&
         a.n_ctx == b.n_ctx && a.vocab_size == b.vocab_size && a.ln == b.ln && a.attention == b.attention &&
         (a.attention == gpt::AttentionKind::Dense || a.band == b.band) && a.dropout == b.dropout &&
         a.bias == b.bias && a.tied_head == b.tied_head && a.ln_eps == b.ln_eps;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  gpt::HfConfig c;
  try {
    c = gpt::parse_hf_config(text, "fuzz/config.json");
  } catch (const gpt::Error&) {
    return 0;
  }
  c.model.validate();  // must not throw: parse_hf_config validated it
  std::unique_ptr<gpt::CharTokenizer> tok;
  if (c.chars) {
    try {
      tok = std::make_unique<gpt::CharTokenizer>(*c.chars);
    } catch (const gpt::Error&) {
    }
  }
  gpt::HfConfig back = gpt::parse_hf_config(gpt::config_to_hf_json(c.model, tok.get()), "again");
  if (!same(c.model, back.model)) std::abort();
  if (tok && (!back.chars || *back.chars != *c.chars)) std::abort();
  return 0;
}
