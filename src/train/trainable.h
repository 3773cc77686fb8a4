// What trains: the optimizer's choice of a model's tensors. Pretraining trains all of them;
// fine-tuning may train the last N blocks (--trainable last:N), only LoRA adapters on a frozen base
// (--trainable lora), or nothing of the model (a task's own head). AdamW updates exactly the
// tensors of a Trainable (train/adamw.h); the model is told which gradients backward must compute
// (apply: GPT::set_requires_grad), and that is all it knows of the choice. See docs/finetuning.md.
#pragma once
#include <cstddef>
#include <functional>
#include <string_view>
#include <vector>

#include "dist/shard.h"
#include "model/gpt.h"

namespace gpt {

// The --trainable flag: all, the last N blocks (+ the final LayerNorm and an untied head), LoRA
// adapters on a frozen model, or nothing of the model (only a task's own tensors).
struct TrainSelection {
  enum Kind { All, LastN, Lora, None } kind = All;
  int n = 0;
};
// "all" | "last:N" | "lora" (errors name the --trainable flag).
TrainSelection parse_train_selection(std::string_view spec, int n_layer);

class Trainable {
 public:
  static Trainable all(const GPT& model);
  static Trainable none(const GPT& model);
  // The blocks layer .. n_layer-1, ln_f and an untied lm_head; the embeddings and the blocks below
  // stay frozen. from_layer(n_layer) trains only the head end; layer outside 0..n_layer throws.
  static Trainable from_layer(const GPT& model, int layer);
  // The tensors `pick` chooses. When it leaves any tensor out, the embeddings (wte, wpe, and so a
  // tied head) are left out too: training them alone is not a use we have.
  static Trainable where(const GPT& model, const std::function<bool(const ParamInfo&)>& pick);
  // --trainable: All -> all, LastN -> from_layer(n_layer - n), Lora and None -> none (the
  // adapters or the task's tensors are the optimizer's other groups).
  static Trainable select(const GPT& model, TrainSelection sel);

  bool contains(size_t tensor) const { return mask_[tensor] != 0; }  // by index in layout()
  bool contains(std::string_view name) const;                        // throws if the model has no such tensor
  bool all() const;
  size_t num_parameters() const;
  // The smallest range of the flat parameter array that holds every trainable tensor (empty: none).
  // Blocks are laid out in order, so the last N blocks and the head end form one tail.
  dist::Range span() const;
  // The trainable tensors cut to `shard` of the flat array, in order, each with its decay flag
  // (absolute offsets).
  std::vector<dist::Segment> segments(dist::Range shard) const;
  // Tells the model which gradients backward computes: those of these tensors.
  void apply(GPT& model) const;

 private:
  std::vector<ParamInfo> layout_;
  std::vector<char> mask_;
  int n_layer_ = 0;
};

}  // namespace gpt
