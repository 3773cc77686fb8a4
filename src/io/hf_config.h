// config.json of a Hugging Face GPT-2 model directory (transformers' GPT2Config) <-> ModelConfig.
// Plain GPT-2 needs only the standard keys. What GPT-2 cannot express travels in extension keys
// that transformers ignores: "gptcpp_ln" ("pre" | "post"), "gptcpp_attention" ("dense" |
// "alternating_banded"), "gptcpp_band", "gptcpp_bias" (false: no biases anywhere),
// "gptcpp_chars" (a character tokenizer's alphabet) and "gptcpp_preset". See docs/checkpoints.md.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

struct HfConfig {
  ModelConfig model;
  std::optional<std::vector<std::string>> chars;  // "gptcpp_chars", when present
  std::optional<std::string> quant;               // "gptcpp_quant": "bf16" or "q8" (gpt quantize wrote it)
};

// Parses and validates config.json text. Unknown keys are ignored; a missing required key, a
// wrong type, an impossible value or a GPT-2 feature gpt.cpp does not implement is one
// gpt::Error starting with `where`. Never crashes, whatever the bytes.
HfConfig parse_hf_config(std::string_view json, const std::string& where);
inline ModelConfig config_from_hf_json(std::string_view json, const std::string& where) {
  return parse_hf_config(json, where).model;
}

// config.json text for `cfg`: GPT2Config keys plus the gptcpp_* keys the config needs. With a
// tokenizer, its end-of-text id becomes bos/eos_token_id and a character tokenizer's alphabet is
// stored as "gptcpp_chars". `tok` may be null.
std::string config_to_hf_json(const ModelConfig& cfg, const Tokenizer* tok);

}  // namespace gpt
