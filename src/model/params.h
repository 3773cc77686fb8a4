// The parameter layout: every trainable tensor of a GPT, by its Hugging Face GPT-2 name, with
// its shape and its offset in one flat arena. Linear weights are kept as GPT-2's Conv1D stores
// them, [in, out] (y = x W + b), so checkpoints load without a transpose.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace gpt {

struct ParamInfo {
  std::string name;            // e.g. "h.3.attn.c_attn.weight"
  std::vector<int64_t> shape;  // e.g. {768, 2304}
  size_t offset = 0;           // in floats, into the arena
  size_t numel = 0;
  bool decay = false;  // AdamW weight decay applies (2-D matrices and embeddings)
};

// The tensors of `cfg` in arena order: wte, wpe, then per layer ln_1, attn.c_attn,
// attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj, then ln_f (pre-LN only) and lm_head (untied only).
// Tensors a config drops (biases with bias=false) are absent.
std::vector<ParamInfo> parameter_layout(const ModelConfig& cfg);

}  // namespace gpt
