#include "train/step_bench.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include "core/error.h"
#include "model/gpt.h"
#include "model/lora.h"
#include "train/adamw.h"
#include "train/step.h"
#include "train/trainable.h"

namespace gpt {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

StepBenchResult bench_train_step(const ModelConfig& cfg, Backend& be, const StepBenchOptions& a) {
  if (a.batch < 1 || a.seq < 1) fail("batch size and sequence length must be >= 1");
  if (a.seq > cfg.n_ctx) fail("--seq-len {} is longer than the model's context {}", a.seq, cfg.n_ctx);
  if (a.steps < 1 || a.warmup < 0) fail("steps must be >= 1 and warm-up steps >= 0");
  const bool train = a.train;
  GPT model(cfg, be);
  model.init_gpt2(1);
  // What trains and its optimizer, as fine-tuning sets them up (finetune/loop.cpp).
  std::unique_ptr<LoraAdapters> lora;
  if (a.lora_r > 0) {
    LoraConfig lc;
    lc.r = a.lora_r;
    lora = std::make_unique<LoraAdapters>(cfg, lc, be);
    lora->init(1);
    model.attach_lora(lora.get());
  }
  const Trainable trainable = lora                   ? Trainable::none(model)
                              : a.freeze_below >= 0 ? Trainable::from_layer(model, a.freeze_below)
                                                    : Trainable::all(model);
  trainable.apply(model);
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<TrainStep> train_step;
  if (train) {
    opt = std::make_unique<AdamW>(model, AdamWConfig{}, trainable);
    if (lora) opt->add_group({"lora", lora->params(), lora->grads(), lora->num_parameters(), {}});
    train_step = std::make_unique<TrainStep>(model, *opt, StepOptions{});
  }
  const size_t N = static_cast<size_t>(a.batch) * a.seq;
  std::mt19937 rng(7);
  std::vector<TokenId> x(N);
  std::vector<int32_t> y(N);
  for (size_t i = 0; i < N; i++) {
    x[i] = rng() % cfg.vocab_size;
    y[i] = static_cast<int32_t>(rng() % cfg.vocab_size);
  }
  StepBenchResult r;
  double* phase = r.phase_s;
  bool timing = false;
  // A device queues its work: each phase ends when the device has done it.
  auto timed = [&](int i, auto&& fn) {
    auto t0 = Clock::now();
    fn();
    be.synchronize();
    if (timing) phase[i] += seconds_since(t0);
  };
  // The product's step (train/step.h): zero_grad is what accumulate() spends outside the forward
  // and backward; the optimizer is update() (the norm, clipping, AdamW, parameters_changed).
  auto step = [&](int k) {
    if (train) {
      const auto t0 = Clock::now();
      const double fb0 = phase[1] + phase[2];
      train_step->accumulate(k, 1, [&](int, uint64_t seed) {
        double l = 0;
        timed(1, [&] { l = model.forward(x.data(), y.data(), a.batch, a.seq, true, seed); });
        timed(2, [&] { model.backward(); });
        return l;
      });
      if (timing) phase[0] += seconds_since(t0) - (phase[1] + phase[2] - fb0);
      timed(3, [&] { train_step->update(1e-4f); });
    } else {
      timed(1, [&] { model.forward(x.data(), y.data(), a.batch, a.seq, false); });
    }
  };
  for (int k = 0; k < a.warmup; k++) step(k);
  std::vector<double> times;
  timing = true;
  for (int k = 0; k < a.steps; k++) {
    auto t0 = Clock::now();
    step(a.warmup + k);
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  r.median_s = times[times.size() / 2];
  r.best_s = times.front();
  r.timed_steps = static_cast<int>(times.size());
  for (double& p : r.phase_s) p /= static_cast<double>(times.size());
  r.tokens_per_s = static_cast<double>(N) / r.median_s;
  r.flops_per_step = (train ? cfg.train_flops_per_token(a.seq) : cfg.forward_flops_per_token(a.seq)) * N;
  r.trainable_parameters = lora ? lora->num_parameters() : trainable.num_parameters();
  r.parameter_bytes = model.parameter_bytes();
  r.gradient_bytes = model.gradient_bytes();
  r.optimizer_bytes = opt ? opt->state_bytes() : 0;
  r.activation_bytes = model.activation_bytes();
  return r;
}

}  // namespace gpt
