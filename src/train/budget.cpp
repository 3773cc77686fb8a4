#include "train/budget.h"

#include <cmath>

#include "core/error.h"
#include "model/gpt.h"

namespace gpt {

TrainingBudget training_budget(const ModelConfig& cfg, Backend& backend, const BudgetOptions& opt) {
  cfg.validate();
  if (!(opt.tokens >= 0) || !std::isfinite(opt.tokens)) fail("--tokens must be >= 0, got {}", opt.tokens);
  if (!(opt.tokens_per_s >= 0)) fail("the training speed must be >= 0");
  const int T = opt.seq > 0 ? opt.seq : cfg.n_ctx;
  if (T > cfg.n_ctx) fail("--seq-len {} is longer than the model's context {}", T, cfg.n_ctx);
  if (opt.batch < 1) fail("--batch-size must be >= 1, got {}", opt.batch);
  TrainingBudget b;
  b.parameters = cfg.num_parameters();
  b.tokens_by_rule = opt.tokens == 0;
  b.tokens = b.tokens_by_rule ? kTokensPerParameter * static_cast<double>(b.parameters) : opt.tokens;
  b.batch = opt.batch;
  b.seq = T;
  b.flops_per_token = cfg.train_flops_per_token(T);
  b.flops = b.flops_per_token * b.tokens;
  // fp32 training: a weight, its gradient and AdamW's two moments are four floats per parameter.
  b.weight_bytes = static_cast<size_t>(b.parameters) * sizeof(float);
  b.gradient_bytes = b.weight_bytes;
  b.optimizer_bytes = 2 * b.weight_bytes;
  b.activation_bytes = GPT::planned_activation_bytes(cfg, backend, opt.batch, T, true);
  b.tokens_per_s = opt.tokens_per_s;
  b.seconds = opt.tokens_per_s > 0 ? b.tokens / opt.tokens_per_s : 0;
  return b;
}

ComputeOptimal compute_optimal(double flops) {
  if (!(flops > 0) || !std::isfinite(flops)) fail("a compute budget must be > 0 FLOPs, got {}", flops);
  ComputeOptimal c;
  c.parameters = std::sqrt(flops / (6.0 * kTokensPerParameter));
  c.tokens = kTokensPerParameter * c.parameters;
  return c;
}

}  // namespace gpt
