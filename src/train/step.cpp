#include "train/step.h"

#include <cmath>

#include "core/error.h"

namespace gpt {

float clip_factor(double norm, float max_norm) {
  if (max_norm <= 0.0f) return 1.0f;
  const double coef = max_norm / (norm + 1e-6);
  return coef >= 1.0 ? 1.0f : static_cast<float>(coef);
}

void check_step_settings(int batch_size, int grad_accum, const LrSchedule& s, const AdamWConfig& a,
                         float grad_clip, float dropout) {
  auto finite = [](double x) { return std::isfinite(x); };
  if (batch_size < 1) fail("--batch-size must be at least 1 (got {})", batch_size);
  if (grad_accum < 1) fail("--grad-accum must be at least 1 (got {})", grad_accum);
  if (!(s.lr > 0) || !finite(s.lr)) fail("--lr must be a positive number (got {})", s.lr);
  if (!(s.min_lr >= 0) || s.min_lr > s.lr) fail("--min-lr must be between 0 and --lr (got {})", s.min_lr);
  if (s.warmup < 0) fail("--warmup must not be negative (got {})", s.warmup);
  if (!(a.beta1 >= 0 && a.beta1 < 1)) fail("--beta1 must be in [0, 1) (got {})", a.beta1);
  if (!(a.beta2 >= 0 && a.beta2 < 1)) fail("--beta2 must be in [0, 1) (got {})", a.beta2);
  if (!(a.eps > 0) || !finite(a.eps)) fail("--eps must be positive (got {})", a.eps);
  if (!(a.weight_decay >= 0) || !finite(a.weight_decay))
    fail("--weight-decay must not be negative (got {})", a.weight_decay);
  if (!(grad_clip >= 0) || !finite(grad_clip)) fail("--grad-clip must not be negative (got {})", grad_clip);
  if (!(dropout >= 0 && dropout < 1)) fail("--dropout must be in [0, 1) (got {})", dropout);
}

uint64_t dropout_seed(uint64_t seed, int64_t step, int accum, int micro, int rank) {
  return (seed * 0x9E3779B97F4A7C15ull) ^ (static_cast<uint64_t>(step) * static_cast<uint64_t>(accum) + micro) ^
         (static_cast<uint64_t>(rank) * 0xD1B54A32D192ED03ull);
}

TrainStep::TrainStep(GPT& model, AdamW& opt, StepOptions o) : model_(model), opt_(opt), o_(o) {}

double TrainStep::accumulate(int64_t step, int K, const std::function<double(int, uint64_t)>& micro) {
  model_.zero_grad();
  opt_.zero_grads();
  const int rank = o_.comm ? o_.comm->rank() : 0;
  double loss = 0.0;
  for (int k = 0; k < K; k++) loss += micro(k, dropout_seed(o_.seed, step, o_.grad_accum, k, rank));
  return loss / K;
}

TrainStep::Update TrainStep::update(float lr) {
  Backend& be = opt_.backend();
  // ZeRO-1: each rank sums its shard of the gradients over the ranks, measures its part of the
  // norm, and updates its shard of the weights; the all-gather then gives every rank all of them.
  // Gradients, parameters and moments are backend memory; only the norm comes to the host.
  if (o_.sync) o_.sync->reduce_scatter(model_.grads());
  double sq = opt_.grad_sum_squares();
  if (o_.comm && o_.comm->size() > 1) o_.comm->allreduce_sum(&sq, 1);
  Update u;
  u.grad_norm = std::sqrt(sq);
  if (!std::isfinite(u.grad_norm)) return u;
  opt_.step(lr, clip_factor(u.grad_norm, o_.grad_clip));  // clipping inside the update
  if (o_.sync) o_.sync->allgather(model_.device_params());
  // Now every parameter is new: a backend with low-precision copies of the weights refreshes them.
  if (o_.sync || opt_.model_trains()) be.parameters_changed(model_.device_params(), model_.num_parameters());
  be.synchronize();
  u.applied = true;
  return u;
}

}  // namespace gpt
