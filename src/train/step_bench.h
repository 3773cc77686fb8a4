// Timing the product's training step (or a forward with loss) on random tokens: `gpt bench
// train-step` / `gpt bench forward`, and the measured speed `gpt info --budget --measure` turns into
// a training time. The model is built here (GPT-2 initialisation), trained as fine-tuning sets it up
// (all of it, blocks from a layer up, or LoRA adapters), stepped through train/step.h.
#pragma once
#include <cstddef>

#include "backend/backend.h"
#include "model/config.h"

namespace gpt {

struct StepBenchOptions {
  int batch = 4, seq = 64, steps = 10, warmup = 2;
  bool train = true;      // false: forward with loss only
  int lora_r = 0;         // LoRA adapters of this rank on c_attn, c_proj, c_fc; base frozen
  int freeze_below = -1;  // embeddings and blocks below this one frozen
};

struct StepBenchResult {
  double median_s = 0, best_s = 0;  // per step, over the timed steps
  int timed_steps = 0;
  double phase_s[4] = {0, 0, 0, 0};  // means: zero_grad, forward, backward, optimizer (training)
  double tokens_per_s = 0;           // B T / median
  double flops_per_step = 0;         // train_flops_per_token (or forward's) x B T
  size_t trainable_parameters = 0;   // what the optimizer updates
  size_t parameter_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0, activation_bytes = 0;
};

// Throws gpt::Error on a sequence longer than the context or a bad option.
StepBenchResult bench_train_step(const ModelConfig& cfg, Backend& backend, const StepBenchOptions& opt);

}  // namespace gpt
