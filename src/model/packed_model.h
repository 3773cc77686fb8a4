// A GPT prepared for inference: its weight matrices packed as f32, bf16 or q8 (ops/packed.h),
// everything else fp32; loaded from any model directory and saved as `gpt quantize` writes it.
// Formats: docs/quantization.md.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/model_dir.h"  // WeightCheck
#include "model/config.h"
#include "model/gpt.h"
#include "ops/packed.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// A model for inference: the matrices packed (f32, bf16 or q8), everything else fp32.
struct PackedModel {
  ModelConfig config;
  ops::WeightType type = ops::WeightType::F32;
  std::shared_ptr<const Tokenizer> tokenizer;  // null if the directory had none
  // By Hugging Face name without prefix: "wte.weight" ([V, C] rows, also the tied LM head), "lm_head.weight"
  // (untied only), "h.{i}.attn.c_attn.weight", "h.{i}.attn.c_proj.weight", "h.{i}.mlp.c_fc.weight",
  // "h.{i}.mlp.c_proj.weight".
  std::map<std::string, ops::PackedMatrix, std::less<>> matrices;
  // Everything else, fp32: "wpe.weight", "h.{i}.ln_1.weight", ".bias"es of the above, "ln_f.weight", ...
  std::map<std::string, std::vector<float>, std::less<>> vectors;
  const ops::PackedMatrix& matrix(std::string_view name) const;  // throws if absent
  const float* vector(std::string_view name) const;              // nullptr if absent (no-bias models)
  const ops::PackedMatrix& lm_head() const;                      // lm_head.weight if untied, else wte.weight
  size_t bytes() const;
};

PackedModel pack_model(const GPT& model, ops::WeightType type, std::shared_ptr<const Tokenizer> tokenizer);
// Any model directory: a plain one (f32/f16/bf16 safetensors, as load_model_dir reads; packed as f32 unless
// `type` is given) or one `gpt quantize` wrote (its own type; `type`, if given, must match or it is an
// error). NaN or infinite weights (or q8 scales) are reported as `check` says (io/model_dir.h).
PackedModel load_packed_model(const std::string& dir, std::optional<ops::WeightType> type = std::nullopt,
                              WeightCheck check = WeightCheck::Warn);
void save_packed_model(const std::string& dir, const PackedModel& model);  // what `gpt quantize` writes

// The fp32 network with the packed weights dequantized (what `gpt eval` runs on a q8 directory).
GPT unpack_model(const PackedModel& model);

// True for the parameters a PackedModel keeps as matrices (2-D, except the position embedding).
bool is_packed_matrix(const ParamInfo& p);

}  // namespace gpt
