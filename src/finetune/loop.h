// The fine-tuning loop, shared by every fine-tuning task: epochs over a task's training examples
// (shuffled, seeded) in batches with gradient accumulation, AdamW on a warmup + decay schedule,
// clipping, dropout, evaluation every K steps and at each epoch end, log lines or a progress bar,
// OUT/metrics.jsonl, OUT/loss.svg, and the final model saved into OUT (plus what the task adds).
// A task (instruction tuning here, classification in finetune/classify.h) owns its data and loss
// and plugs in through FinetuneTask. See docs/finetuning.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/gpt.h"
#include "model/lora.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "train/trainable.h"
#include "train/lr_schedule.h"

namespace gpt {

enum class Split { Train, Val, Test };
const char* split_name(Split s);  // "train", "val", "test"

class FinetuneTask {
 public:
  virtual ~FinetuneTask() = default;
  virtual std::string name() const = 0;  // "instruct", "classify", ...
  // Examples in a split (0: the split is absent).
  virtual size_t size(Split s) const = 0;
  // One micro-batch of training examples (indices into the train split): forward and backward,
  // adding grad_scale * d(mean loss)/d(parameters) to model.grads() and to the gradients of the
  // task's own parameter groups. `seed` seeds dropout. Returns the batch's mean loss.
  virtual double train_batch(GPT& model, std::span<const size_t> idx, float grad_scale, uint64_t seed) = 0;
  // Metrics over a whole split, with dropout off, e.g. {"loss": 1.9} or {"loss": .., "accuracy": ..}.
  // The loop logs them as "<split>_<key>" in metrics.jsonl.
  virtual nlohmann::json evaluate(GPT& model, Split s) = 0;
  // The key of evaluate() that log lines and the plot show ("loss", "accuracy").
  virtual std::string metric() const { return "loss"; }
  // Trainable parameters outside the model (a classification head: none by default), as AdamW's
  // groups: host arrays on the CPU, which the loop updates beside the model's.
  virtual std::vector<ParamGroup> param_groups() { return {}; }
  // Writes what the task adds to the output model directory (after the loop saved the model there),
  // each file atomically.
  virtual void save(const std::string& out_dir, const GPT& model) {
    (void)out_dir;
    (void)model;
  }
};

// New LoRA adapters for `model` from `cfg`, initialised from `seed` and attached. The caller keeps
// them alive while attached; what trains (Trainable, with the adapters as AdamW's group) is the
// loop's choice.
std::unique_ptr<LoraAdapters> attach_new_lora(GPT& model, const LoraConfig& cfg, uint64_t seed);

struct FinetuneConfig {
  std::string out_dir;
  int epochs = 1;
  int max_steps = 0;  // > 0: exactly this many optimizer steps, whatever `epochs` says
  int batch_size = 8;
  int grad_accum = 1;
  LrSchedule schedule;  // steps is set by the loop from epochs / max_steps
  AdamWConfig adam;
  float grad_clip = 1.0f;  // 0: off
  float dropout = 0.0f;
  uint64_t seed = 1337;
  bool shuffle = true;
  int eval_every = 0;  // steps; 0: only at each epoch end
  TrainSelection train;  // train/trainable.h
  LoraConfig lora;         // with train = lora; the adapters start from `seed`
  std::string base_model;  // named in adapter_config.json
  bool save = true;        // save the model (+ the task's files) into out_dir at the end
  bool quiet = false;
};

struct FinetuneResult {
  int steps = 0;
  double train_loss = 0;                // of the last step
  nlohmann::json val;                   // the last evaluation of the val split (null if none)
  std::vector<nlohmann::json> history;  // every evaluation: {"step", "epoch", "val_...": ...}
};

// Runs the loop. The model trains on its own backend (the CPU). `tok` (may be null) is saved with
// the model. With LoRA, OUT also gets the adapters (adapter_model.safetensors + adapter_config.json,
// PEFT's format) and the saved model (and `model` on return) has them merged in. Throws gpt::Error
// on bad settings or a non-finite loss.
FinetuneResult finetune(GPT& model, const Tokenizer* tok, FinetuneTask& task, const FinetuneConfig& cfg);

}  // namespace gpt
