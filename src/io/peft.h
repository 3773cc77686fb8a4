// LoRA adapters as Hugging Face PEFT saves them: DIR/adapter_config.json and
// DIR/adapter_model.safetensors, read and written for model/lora.h's LoraAdapters. See docs/lora.md.
#pragma once
#include <string>

#include "model/gpt.h"
#include "model/lora.h"

namespace gpt {

// Writes DIR/adapter_model.safetensors (PEFT names, fp32) and DIR/adapter_config.json (PEFT's
// LoraConfig for a CAUSAL_LM on GPT-2's Conv1D: fan_in_fan_out true, bias "none"), each atomically.
void save_lora(const std::string& dir, const LoraAdapters& adapters, const std::string& base_model_name);
// Reads what save_lora writes (or PEFT's save_pretrained) for `model`: every tensor present with
// the shape `model` and the config want, nothing else; one gpt::Error naming the first mismatch.
LoraAdapters load_lora(const std::string& dir, const GPT& model);

}  // namespace gpt
