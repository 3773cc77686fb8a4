// LoRA: low-rank adapters on a frozen GPT (Hu et al. 2021). A targeted projection y = x W + b
// becomes y = x W + b + scale * B(A(drop(x))), with A [r, in], B [out, r], scale = alpha / r, and
// only A and B train. B starts at zero, so an attached adapter changes nothing until it learns.
//
// Layout and names follow Hugging Face PEFT on GPT-2, so adapters interchange (the files: io/peft.h): A is lora_A.weight
// (nn.Linear(in, r).weight, [r, in]), B is lora_B.weight ([out, r]); the update to GPT-2's Conv1D
// weight [in, out] is scale * (B A)^T (fan_in_fan_out). See docs/lora.md.
//
// The math is the backend's (Backend::lora_forward / lora_backward, ops.h) and the tensors live in
// the backend's memory, like the model's they decorate; the CPU backends have the two ops (CUDA not
// yet: GPT::attach_lora says so).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "ops/ops.h"

namespace gpt {

class GPT;

// The projections an adapter can sit on, per block.
enum class LoraTarget : int { Attn = 0, AttnProj = 1, Fc = 2, FcProj = 3 };
inline constexpr int kLoraTargets = 4;
// "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj": the module path inside a block.
const char* lora_target_module(LoraTarget t);

struct LoraConfig {
  int r = 8;
  float alpha = 16.0f;
  float dropout = 0.05f;  // on the adapter's input, in training forwards only
  // Hugging Face GPT-2 module names: "c_attn" (the fused qkv), "c_proj" (attn.c_proj AND
  // mlp.c_proj, as PEFT matches it), "c_fc"; "attn.c_proj" / "mlp.c_proj" (also "attn.c_attn",
  // "mlp.c_fc") name one of them.
  std::vector<std::string> targets = {"c_attn", "c_proj", "c_fc"};
  float scale() const { return alpha / static_cast<float>(r); }
};
// Which of the four projections `targets` names; throws gpt::Error on an unknown name or none.
std::array<bool, kLoraTargets> lora_target_mask(const std::vector<std::string>& targets);

// One adapter matrix in the arena.
struct LoraTensor {
  std::string name;  // PEFT's: base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight
  int layer = 0;
  LoraTarget target = LoraTarget::Attn;
  bool is_b = false;             // lora_B ([out, r]) or lora_A ([r, in])
  std::vector<int64_t> shape;    // {r, in} or {out, r}
  size_t offset = 0, numel = 0;  // in floats, into params() / grads()
};

class LoraAdapters {
 public:
  // Adapters for every block of `model` on cfg.targets, all zero (init() for PEFT's start), in
  // `backend`'s memory (the model's backend: GPT::attach_lora checks).
  LoraAdapters(const ModelConfig& model, LoraConfig cfg, Backend& backend = cpu_backend());

  // PEFT's initialisation: A ~ Kaiming-uniform (a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))), B = 0.
  void init(uint64_t seed);

  const LoraConfig& config() const { return cfg_; }
  const ModelConfig& model_config() const { return model_; }
  float scale() const { return cfg_.scale(); }
  const std::vector<LoraTensor>& layout() const { return layout_; }
  const LoraTensor* find(std::string_view name) const;  // nullptr if absent
  size_t num_parameters() const { return n_; }
  Backend& backend() const { return *be_; }
  // The parameters and their gradients, in backend memory (host memory on the CPU).
  float* params() { return static_cast<float*>(params_.get()); }
  const float* params() const { return static_cast<const float*>(params_.get()); }
  float* grads() { return static_cast<float*>(grads_.get()); }
  const float* grads() const { return static_cast<const float*>(grads_.get()); }
  void zero_grad();
  // Host copies (files, merging, tests), and the parameters back from the host.
  std::vector<float> host_params() const;
  std::vector<float> host_grads() const;
  void set_params(const float* host);

  // One adapter's tensors (all null where (layer, t) has none): A [r, in], B [out, r] and their
  // gradients, in backend memory; GPT's forward and backward hand them to Backend::lora_forward /
  // lora_backward (ops.h).
  struct Slot {
    float *a = nullptr, *b = nullptr, *da = nullptr, *db = nullptr;
    int in = 0, out = 0;
  };
  const Slot& slot(int layer, LoraTarget t) const {
    return slots_[static_cast<size_t>(layer) * kLoraTargets + static_cast<int>(t)];
  }
  bool has(int layer, LoraTarget t) const { return slot(layer, t).a != nullptr; }
  // The lowest block with an adapter (n_layer when there is none).
  int lowest_layer() const;

 private:
  Slot& mutable_slot(int layer, LoraTarget t) {
    return slots_[static_cast<size_t>(layer) * kLoraTargets + static_cast<int>(t)];
  }
  void bind();

  ModelConfig model_;
  LoraConfig cfg_;
  std::vector<LoraTensor> layout_;
  Backend* be_;
  size_t n_ = 0;
  BackendBuffer params_, grads_;
  std::vector<Slot> slots_;  // [n_layer][kLoraTargets]
};

// The PEFT tensor names and shapes, in PEFT's order (by layer, then c_attn, c_proj, c_fc, c_proj):
// what adapter_model.safetensors must hold for `model` and `cfg`.
std::vector<LoraTensor> lora_layout(const ModelConfig& model, const LoraConfig& cfg);

// W += scale * (B A)^T for every adapter: the base alone then computes what base + adapters did.
void merge_lora(GPT& model, const LoraAdapters& adapters);

}  // namespace gpt
