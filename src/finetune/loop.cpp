#include "finetune/loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/io.h"
#include "io/peft.h"
#include "io/model_dir.h"
#include "train/run_log.h"
#include "train/step.h"

namespace gpt {

using nlohmann::json;

const char* split_name(Split s) {
  switch (s) {
    case Split::Train:
      return "train";
    case Split::Val:
      return "val";
    case Split::Test:
      return "test";
  }
  return "?";
}

std::unique_ptr<LoraAdapters> attach_new_lora(GPT& model, const LoraConfig& cfg, uint64_t seed) {
  auto lora = std::make_unique<LoraAdapters>(model.config(), cfg, model.backend());
  lora->init(seed);
  model.attach_lora(lora.get());
  return lora;
}

namespace {

using Clock = std::chrono::steady_clock;

void check_config(const FinetuneConfig& c) {
  if (c.epochs < 1) fail("--epochs must be at least 1 (got {})", c.epochs);
  if (c.max_steps < 0) fail("--max-steps must not be negative (got {})", c.max_steps);
  check_step_settings(c.batch_size, c.grad_accum, c.schedule, c.adam, c.grad_clip, c.dropout);
  if (c.eval_every < 0) fail("--eval-every must not be negative (got {})", c.eval_every);
}

class Loop {
 public:
  Loop(GPT& model, const Tokenizer* tok, FinetuneTask& task, const FinetuneConfig& cfg)
      : model_(model), tok_(tok), task_(task), cfg_(cfg) {}
  ~Loop() {
    // Done or failed, the model goes back as it came: no pointer to adapters that go away, and
    // every gradient wanted again.
    if (lora_ && model_.lora() == lora_.get()) model_.attach_lora(nullptr);
    Trainable::all(model_).apply(model_);
  }
  FinetuneResult run();

 private:
  void evaluate(int step, int epoch, double train_loss);

  GPT& model_;
  const Tokenizer* tok_;
  FinetuneTask& task_;
  FinetuneConfig cfg_;
  std::optional<RunLog> log_;
  FinetuneResult result_;
  std::unique_ptr<LoraAdapters> lora_;
};

void Loop::evaluate(int step, int epoch, double train_loss) {
  if (task_.size(Split::Val) == 0) return;
  model_.set_dropout(0.0f);
  json m = task_.evaluate(model_, Split::Val);
  model_.set_dropout(cfg_.dropout);
  json line = {{"step", step}, {"epoch", epoch}};
  std::string text;
  for (auto it = m.begin(); it != m.end(); ++it) {
    line["val_" + it.key()] = it.value();
    if (it.value().is_number()) text += fmt::format(" | val {} {:.4f}", it.key(), it.value().get<double>());
  }
  log_->metrics(line);
  result_.val = m;
  result_.history.push_back(line);
  if (m.contains(task_.metric()) && m[task_.metric()].is_number()) log_->val_point(step, m[task_.metric()].get<double>());
  log_->write_plot();
  if (step == 0)
    log_->print(fmt::format("step {:>5} | before training{}", step, text));
  else
    log_->print(fmt::format("step {:>5} | epoch {} | train loss {:.4f}{}", step, epoch, train_loss, text));
}

FinetuneResult Loop::run() {
  check_config(cfg_);
  const size_t N = task_.size(Split::Train);
  if (N == 0) fail("no training examples");
  const size_t per_step = static_cast<size_t>(cfg_.batch_size) * cfg_.grad_accum;
  const int steps_per_epoch = static_cast<int>((N + per_step - 1) / per_step);
  const int total = cfg_.max_steps > 0 ? cfg_.max_steps : cfg_.epochs * steps_per_epoch;
  LrSchedule sched = cfg_.schedule;
  sched.steps = total;

  // What trains: the model's tensors that the selection picks, the adapters, the task's own tensors;
  // one AdamW over them all.
  if (cfg_.train.kind == TrainSelection::Lora) lora_ = attach_new_lora(model_, cfg_.lora, cfg_.seed);
  const Trainable trainable = Trainable::select(model_, cfg_.train);
  trainable.apply(model_);  // backward computes these gradients and stops below them
  AdamW opt(model_, cfg_.adam, trainable);
  for (ParamGroup& g : task_.param_groups()) opt.add_group(std::move(g));
  if (lora_) opt.add_group({"lora", lora_->params(), lora_->grads(), lora_->num_parameters(), {}});
  const size_t in_model = trainable.num_parameters(), outside = opt.num_trainable() - in_model;
  if (opt.num_trainable() == 0) fail("nothing to train: every parameter is frozen");
  model_.set_dropout(cfg_.dropout);
  TrainStep train_step(model_, opt, {.grad_clip = cfg_.grad_clip, .seed = cfg_.seed, .grad_accum = cfg_.grad_accum});

  log_.emplace(RunLogOptions{.out_dir = cfg_.out_dir,
                             .plot_title = "gpt.cpp fine-tuning: " + task_.name(),
                             .train_series = "train loss",
                             .val_series = "val " + task_.metric(),
                             .bar_label = "finetune",
                             .total_steps = static_cast<uint64_t>(total),
                             .quiet = cfg_.quiet});
  log_->print(
      fmt::format("fine-tuning ({}) {:.2f}M of {:.2f}M parameters{}: {} train examples, {} val, "
                  "{} steps ({} per epoch, batch {} x {} accumulated)",
                  task_.name(), opt.num_trainable() / 1e6, model_.num_parameters() / 1e6,
                  outside ? fmt::format(" ({} outside the model)", outside) : "", N, task_.size(Split::Val), total,
                  steps_per_epoch, cfg_.batch_size, cfg_.grad_accum));

  evaluate(0, 0, 0.0);  // where the model starts
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), size_t{0});
  size_t cursor = N;  // start a new epoch at once
  int epoch = 0;
  double loss = 0.0;
  const auto start = Clock::now();
  for (int step = 1; step <= total; ++step) {
    const auto t0 = Clock::now();
    if (cursor >= N) {
      ++epoch;
      cursor = 0;
      if (cfg_.shuffle) {
        std::mt19937_64 rng(cfg_.seed + static_cast<uint64_t>(epoch));
        std::shuffle(order.begin(), order.end(), rng);
      }
    }
    // A step takes up to batch x accum examples, never across an epoch's end.
    const size_t take = std::min(per_step, N - cursor);
    const int micro = static_cast<int>((take + cfg_.batch_size - 1) / cfg_.batch_size);
    loss = train_step.accumulate(step, micro, [&](int k, uint64_t dseed) {
      const size_t b = cursor + static_cast<size_t>(k) * cfg_.batch_size;
      const size_t e = std::min(cursor + take, b + cfg_.batch_size);
      const double l =
          task_.train_batch(model_, std::span<const size_t>(order.data() + b, e - b), 1.0f / micro, dseed);
      if (!std::isfinite(l)) fail("the loss became {} at step {}: fine-tuning stopped (try a lower --lr)", l, step);
      return l;
    });
    cursor += take;
    const float lr = sched.at(step);
    const TrainStep::Update up = train_step.update(lr);
    if (!up.applied) fail("the gradient norm became {} at step {}", up.grad_norm, step);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    log_->metrics({{"step", step},
                   {"epoch", epoch},
                   {"loss", loss},
                   {"lr", lr},
                   {"grad_norm", up.grad_norm},
                   {"examples", take},
                   {"elapsed_s", elapsed}});
    log_->train_point(step, loss);
    log_->step(step, 1, fmt::format("epoch {} · loss {:.4f}", epoch, loss),
               fmt::format("step {:>5}/{} | epoch {} | loss {:.4f} | lr {:.3e} | norm {:.3f} | {:.0f} ms", step,
                           total, epoch, loss, lr, up.grad_norm, dt * 1e3));
    const bool epoch_end = cursor >= N;
    if ((cfg_.eval_every > 0 && step % cfg_.eval_every == 0) || epoch_end || step == total)
      evaluate(step, epoch, loss);
  }
  log_->finish();
  if (lora_) {
    // The adapters on their own (PEFT's format), then merged into the model.
    if (cfg_.save && !cfg_.out_dir.empty()) save_lora(cfg_.out_dir, *lora_, cfg_.base_model);
    model_.attach_lora(nullptr);
    merge_lora(model_, *lora_);
  }
  result_.steps = total;
  result_.train_loss = loss;
  log_->write_plot();
  if (cfg_.save && !cfg_.out_dir.empty()) {
    model_.set_dropout(0.0f);
    model_.download_parameters();
    save_model_dir(cfg_.out_dir, model_, tok_);
    task_.save(cfg_.out_dir, model_);
    log_->print(fmt::format("done: {} steps, final train loss {:.4f}; model in {}", total, loss, cfg_.out_dir));
  }
  return result_;
}

}  // namespace

FinetuneResult finetune(GPT& model, const Tokenizer* tok, FinetuneTask& task, const FinetuneConfig& cfg) {
  Loop loop(model, tok, task, cfg);
  return loop.run();
}

}  // namespace gpt
