// One training step, the same for pretraining and fine-tuning: micro-batches with gradient
// accumulation, the ranks' gradients summed into each rank's shard (reduce-scatter), the global
// gradient norm and clipping, one AdamW update over every parameter group (model, task head,
// adapters), the updated shards handed to every rank (all-gather). The drivers (train/trainer.cpp,
// finetune/loop.cpp) choose the batches and the loss; `gpt bench train-step` times this very path.
// See docs/training-loop.md.
#pragma once
#include <cstdint>
#include <functional>

#include "dist/communicator.h"
#include "dist/param_sync.h"
#include "model/gpt.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace gpt {

// The global L2 norm's clipping factor: max_norm / (norm + 1e-6) when that is below 1, as PyTorch's
// clip_grad_norm_ computes it; 1 when unclipped or max_norm <= 0.
float clip_factor(double norm, float max_norm);

// Checks the settings every training run shares (errors name the flags): batch, accumulation, the
// learning-rate schedule, AdamW's hyperparameters, clipping, dropout.
void check_step_settings(int batch_size, int grad_accum, const LrSchedule& schedule, const AdamWConfig& adam,
                         float grad_clip, float dropout);

// The dropout seed of micro-batch `micro` of step `step` on `rank` (rank 0 keeps the one-process
// seed; the other ranks drop out other units).
uint64_t dropout_seed(uint64_t seed, int64_t step, int accum, int micro, int rank);

struct StepOptions {
  float grad_clip = 1.0f;  // 0: off
  uint64_t seed = 1337;    // dropout
  int grad_accum = 1;      // micro-batches in a full step (a short last step keeps the seeds of a full one)
  // A data-parallel run: the ranks and how gradients and parameters travel (dist/param_sync.h).
  // Null: one rank.
  dist::Communicator* comm = nullptr;
  dist::ParamSync* sync = nullptr;
};

class TrainStep {
 public:
  TrainStep(GPT& model, AdamW& opt, StepOptions o);

  // Zeroes every gradient, then runs micro-batches k = 0 .. K-1 (K <= grad_accum): micro(k, dropout_seed) runs one
  // forward and backward that adds its share of the gradient of the step's loss, and returns its
  // loss. Returns their mean.
  double accumulate(int64_t step, int K, const std::function<double(int k, uint64_t dropout_seed)>& micro);
  struct Update {
    double grad_norm = 0;  // before clipping, over every rank and group
    bool applied = false;  // false: the norm is not finite and nothing changed
  };
  // Reduce-scatter, the norm, AdamW at `lr` with the clipping factor applied as it reads the
  // gradients (no pass of its own), all-gather, and the backend told that the weights changed; it returns when the backend has done the work (the step's time includes it).
  Update update(float lr);

  AdamW& optimizer() { return opt_; }

 private:
  GPT& model_;
  AdamW& opt_;
  StepOptions o_;
};

}  // namespace gpt
