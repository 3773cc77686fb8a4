// What training a model costs (gpt info --budget, docs/scale.md): its FLOPs on D tokens (6 N + the
// attention term per token, model/config.h), the memory of fp32 AdamW training at B x T (weights,
// gradients, the two moments, and the activations the training network plans: the model's own plan,
// counted without building it), the time at a speed measured on this machine, and the rule of thumb
// for the compute-optimal size of a compute budget.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/backend.h"
#include "model/config.h"

namespace gpt {

// Compute-optimal training (Hoffmann et al. 2022, "Chinchilla"): about 20 tokens per parameter.
inline constexpr double kTokensPerParameter = 20.0;

struct BudgetOptions {
  double tokens = 0;        // training tokens; 0: kTokensPerParameter per parameter
  int batch = 8, seq = 0;   // the memory plan's B and T (seq 0: the context)
  double tokens_per_s = 0;  // measured training speed at B x T; 0: no time
};

struct TrainingBudget {
  uint64_t parameters = 0;
  double tokens = 0;
  bool tokens_by_rule = false;  // tokens came from kTokensPerParameter
  int batch = 0, seq = 0;
  double flops_per_token = 0;  // forward + backward at T = seq
  double flops = 0;            // flops_per_token x tokens
  size_t weight_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0, activation_bytes = 0;
  size_t total_bytes() const { return weight_bytes + gradient_bytes + optimizer_bytes + activation_bytes; }
  double tokens_per_s = 0, seconds = 0;  // 0 without a speed
};

// Throws gpt::Error on bad options (negative tokens, B or T out of range).
TrainingBudget training_budget(const ModelConfig& cfg, Backend& backend, const BudgetOptions& opt);

// The compute-optimal split of a compute budget C (FLOPs): with C = 6 N D and D = 20 N,
// N = sqrt(C / 120) parameters and D = 20 N tokens.
struct ComputeOptimal {
  double parameters = 0, tokens = 0;
};
ComputeOptimal compute_optimal(double flops);

}  // namespace gpt
