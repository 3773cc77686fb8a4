// The fine-tuning loop, shared by every fine-tuning task: epochs over a task's training examples
// (shuffled, seeded) in batches with gradient accumulation, AdamW on a warmup + decay schedule,
// clipping, dropout, evaluation every K steps and at each epoch end, log lines or a progress bar,
// OUT/metrics.jsonl, OUT/loss.svg, and the final model saved into OUT (plus what the task adds).
// A task (instruction tuning here, classification in finetune/classify.h) owns its data and loss
// and plugs in through FinetuneTask. See docs/finetuning.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/gpt.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace gpt {

enum class Split { Train, Val, Test };
const char* split_name(Split s);  // "train", "val", "test"

// Parameters a task trains outside the model (a classification head): host arrays the loop updates
// with AdamW alongside the model's. The loop zeroes `grads` before each step.
struct ExtraTensor {
  std::string name;
  float* params = nullptr;
  float* grads = nullptr;
  size_t n = 0;
  bool decay = true;  // weight decay (matrices yes, biases no)
};

class FinetuneTask {
 public:
  virtual ~FinetuneTask() = default;
  virtual std::string name() const = 0;  // "instruct", "classify", ...
  // Examples in a split (0: the split is absent).
  virtual size_t size(Split s) const = 0;
  // One micro-batch of training examples (indices into the train split): forward and backward,
  // adding grad_scale * d(mean loss)/d(parameters) to model.grads() and to the extra tensors'
  // gradients. `seed` seeds dropout. Returns the batch's mean loss.
  virtual double train_batch(GPT& model, std::span<const size_t> idx, float grad_scale, uint64_t seed) = 0;
  // Metrics over a whole split, with dropout off, e.g. {"loss": 1.9} or {"loss": .., "accuracy": ..}.
  // The loop logs them as "<split>_<key>" in metrics.jsonl.
  virtual nlohmann::json evaluate(GPT& model, Split s) = 0;
  // The key of evaluate() that log lines and the plot show ("loss", "accuracy").
  virtual std::string metric() const { return "loss"; }
  // Trainable parameters outside the model (none by default).
  virtual std::vector<ExtraTensor> extra_tensors() { return {}; }
  // Writes what the task adds to the output model directory (after the loop saved the model there),
  // each file atomically.
  virtual void save(const std::string& out_dir, const GPT& model) {
    (void)out_dir;
    (void)model;
  }
};

// Which parameters train: all of them, the last N transformer blocks (+ the final LayerNorm and an
// untied head; the embeddings stay frozen), or nothing of the model (only the task's own tensors,
// e.g. LoRA adapters or a classification head).
struct TrainSelection {
  enum Kind { All, LastN, None } kind = All;
  int n = 0;
};
// "all" | "last:N" (errors name the flag). "lora" is handled by the caller (it attaches adapters and
// selects None).
TrainSelection parse_train_selection(std::string_view spec, int n_layer);
// The range of the flat parameter array that trains (contiguous: blocks are laid out in order).
dist::Range trainable_range(const GPT& model, TrainSelection sel);

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
  TrainSelection train;
  bool save = true;  // save the model (+ the task's files) into out_dir at the end
  bool quiet = false;
};

struct FinetuneResult {
  int steps = 0;
  double train_loss = 0;                // of the last step
  nlohmann::json val;                   // the last evaluation of the val split (null if none)
  std::vector<nlohmann::json> history;  // every evaluation: {"step", "epoch", "val_...": ...}
};

// Runs the loop. The model trains on its own backend (the CPU). `tok` (may be null) is saved with
// the model. Throws gpt::Error on bad settings or a non-finite loss.
FinetuneResult finetune(GPT& model, const Tokenizer* tok, FinetuneTask& task, const FinetuneConfig& cfg);

}  // namespace gpt
