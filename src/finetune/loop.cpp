#include "finetune/loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/io.h"
#include "io/peft.h"
#include "core/progress.h"
#include "io/model_dir.h"
#include "ops/ops.h"
#include "train/plot.h"
#include "train/trainer.h"

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

TrainSelection parse_train_selection(std::string_view spec, int n_layer) {
  if (spec == "all") return {TrainSelection::All, n_layer};
  if (spec.substr(0, 5) == "last:") {
    std::string num(spec.substr(5));
    char* end = nullptr;
    long n = std::strtol(num.c_str(), &end, 10);
    if (num.empty() || *end != '\0' || n < 0 || n > n_layer)
      fail("--trainable last:N needs N between 0 and the model's {} layers (got \"{}\")", n_layer, spec);
    return {TrainSelection::LastN, static_cast<int>(n)};
  }
  if (spec == "lora") return {TrainSelection::Lora, 0};
  fail("--trainable must be all, last:N or lora (got \"{}\")", spec);
}

std::unique_ptr<LoraAdapters> attach_new_lora(GPT& model, const LoraConfig& cfg, uint64_t seed) {
  auto lora = std::make_unique<LoraAdapters>(model.config(), cfg);
  lora->init(seed);
  model.attach_lora(lora.get());  // freezes the base
  return lora;
}

dist::Range trainable_range(const GPT& model, TrainSelection sel) {
  const size_t total = model.num_parameters();
  if (sel.kind == TrainSelection::All) return {0, total};
  if (sel.kind == TrainSelection::None || sel.kind == TrainSelection::Lora) return {total, total};
  const int L = model.config().n_layer;
  if (sel.n >= L) {  // every block, still not the embeddings
    const ParamInfo* p = model.find("h.0.ln_1.weight");
    return {p ? p->offset : 0, total};
  }
  // Blocks are laid out in order after the embeddings, then ln_f and an untied head: the last N
  // blocks and everything after them form one tail of the flat array.
  const ParamInfo* first = model.find(fmt::format("h.{}.ln_1.weight", L - sel.n));
  if (sel.n == 0) {
    const ParamInfo* lnf = model.find("ln_f.weight");
    const ParamInfo* head = model.find("lm_head.weight");
    const ParamInfo* p = lnf ? lnf : head;
    return {p ? p->offset : total, total};
  }
  if (!first) fail("the model has no layer {}", L - sel.n);
  return {first->offset, total};
}

namespace {

using Clock = std::chrono::steady_clock;

void check_config(const FinetuneConfig& c) {
  if (c.epochs < 1) fail("--epochs must be at least 1 (got {})", c.epochs);
  if (c.max_steps < 0) fail("--max-steps must not be negative (got {})", c.max_steps);
  if (c.batch_size < 1) fail("--batch-size must be at least 1 (got {})", c.batch_size);
  if (c.grad_accum < 1) fail("--grad-accum must be at least 1 (got {})", c.grad_accum);
  if (!(c.schedule.lr > 0) || !std::isfinite(c.schedule.lr))
    fail("--lr must be a positive number (got {})", c.schedule.lr);
  if (!(c.schedule.min_lr >= 0) || c.schedule.min_lr > c.schedule.lr)
    fail("--min-lr must be between 0 and --lr (got {})", c.schedule.min_lr);
  if (c.schedule.warmup < 0) fail("--warmup must not be negative (got {})", c.schedule.warmup);
  if (!(c.adam.weight_decay >= 0)) fail("--weight-decay must not be negative");
  if (!(c.grad_clip >= 0)) fail("--grad-clip must not be negative (got {})", c.grad_clip);
  if (!(c.dropout >= 0 && c.dropout < 1)) fail("--dropout must be in [0, 1) (got {})", c.dropout);
  if (c.eval_every < 0) fail("--eval-every must not be negative (got {})", c.eval_every);
}

// AdamW moments for one host tensor a task trains (the same update as the model's, ops::adamw_update).
struct ExtraState {
  ExtraTensor t;
  std::vector<float> m, v;
};

class Loop {
 public:
  Loop(GPT& model, const Tokenizer* tok, FinetuneTask& task, const FinetuneConfig& cfg)
      : model_(model), tok_(tok), task_(task), cfg_(cfg) {}
  ~Loop() {
    // An error on the way: the model must not keep pointing at adapters that go away.
    if (lora_ && model_.lora() == lora_.get()) model_.attach_lora(nullptr);
  }
  FinetuneResult run();

 private:
  void evaluate(int step, int epoch, double train_loss);
  void log(const std::string& s) {
    if (cfg_.quiet) return;
    if (bar_) bar_->finish();
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  }
  void metrics_line(const json& j) {
    if (!metrics_) return;
    std::fprintf(metrics_, "%s\n", j.dump().c_str());
    std::fflush(metrics_);
  }
  void write_plot() {
    if (cfg_.out_dir.empty()) return;
    write_loss_plot_svg(cfg_.out_dir + "/loss.svg", "gpt.cpp fine-tuning: " + task_.name(),
                        {{"train loss", train_curve_}, {"val " + task_.metric(), val_curve_}});
  }

  GPT& model_;
  const Tokenizer* tok_;
  FinetuneTask& task_;
  FinetuneConfig cfg_;
  std::FILE* metrics_ = nullptr;
  std::unique_ptr<Progress> bar_;
  std::vector<CurvePoint> train_curve_, val_curve_;
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
  metrics_line(line);
  result_.val = m;
  result_.history.push_back(line);
  if (m.contains(task_.metric()) && m[task_.metric()].is_number())
    val_curve_.push_back({static_cast<double>(step), m[task_.metric()].get<double>()});
  write_plot();
  if (step == 0)
    log(fmt::format("step {:>5} | before training{}", step, text));
  else
    log(fmt::format("step {:>5} | epoch {} | train loss {:.4f}{}", step, epoch, train_loss, text));
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

  // The optimizer: AdamW over the trainable range of the model (a tail of the flat array), plus
  // the task's own tensors.
  const dist::Range range = trainable_range(model_, cfg_.train);
  if (cfg_.train.kind == TrainSelection::LastN) {
    // Frozen blocks get no gradient and backward stops above them.
    model_.freeze_below(model_.config().n_layer - cfg_.train.n);
  } else if (cfg_.train.kind == TrainSelection::Lora) {
    lora_ = attach_new_lora(model_, cfg_.lora, cfg_.seed);
  }
  std::unique_ptr<AdamW> opt;
  if (range.size() > 0) opt = std::make_unique<AdamW>(model_, cfg_.adam, range);
  std::vector<ExtraState> extras;
  size_t extra_count = 0;
  std::vector<ExtraTensor> extra = task_.extra_tensors();
  if (lora_) extra.push_back({"lora", lora_->params(), lora_->grads(), lora_->num_parameters(), true});
  for (const ExtraTensor& t : extra) {
    extras.push_back({t, std::vector<float>(t.n, 0.0f), std::vector<float>(t.n, 0.0f)});
    extra_count += t.n;
  }
  if (range.size() == 0 && extra_count == 0) fail("nothing to train: every parameter is frozen");
  model_.set_dropout(cfg_.dropout);

  if (!cfg_.out_dir.empty()) {
    make_dirs(cfg_.out_dir);
    write_file_atomic(cfg_.out_dir + "/metrics.jsonl", "");
    metrics_ = std::fopen((cfg_.out_dir + "/metrics.jsonl").c_str(), "a");
    if (!metrics_) fail("cannot open {}/metrics.jsonl for writing", cfg_.out_dir);
  }
  struct Closer {
    std::FILE*& f;
    ~Closer() {
      if (f) std::fclose(f);
      f = nullptr;
    }
  } closer{metrics_};

  log(
      fmt::format("fine-tuning ({}) {:.2f}M of {:.2f}M parameters{}: {} train examples, {} val, "
                  "{} steps ({} per epoch, batch {} x {} accumulated)",
                  task_.name(), (range.size() + extra_count) / 1e6, model_.num_parameters() / 1e6,
                  extra_count ? fmt::format(" ({} outside the model)", extra_count) : "", N,
                  task_.size(Split::Val), total, steps_per_epoch, cfg_.batch_size, cfg_.grad_accum));
  if (!cfg_.quiet && Progress::is_terminal())
    bar_ = std::make_unique<Progress>("finetune", static_cast<uint64_t>(total), "steps");

  evaluate(0, 0, 0.0);  // where the model starts
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), size_t{0});
  size_t cursor = N;  // start a new epoch at once
  int epoch = 0;
  double loss = 0.0;
  Backend& be = model_.backend();
  const auto start = Clock::now();
  int64_t extra_t = 0;
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
    model_.zero_grad();
    for (ExtraState& e : extras) std::fill(e.t.grads, e.t.grads + e.t.n, 0.0f);
    loss = 0.0;
    for (int k = 0; k < micro; ++k) {
      const size_t b = cursor + static_cast<size_t>(k) * cfg_.batch_size;
      const size_t e = std::min(cursor + take, b + cfg_.batch_size);
      const uint64_t dseed =
          (cfg_.seed * 0x9E3779B97F4A7C15ull) ^ (static_cast<uint64_t>(step) * cfg_.grad_accum + k);
      const double l =
          task_.train_batch(model_, std::span<const size_t>(order.data() + b, e - b), 1.0f / micro, dseed);
      if (!std::isfinite(l))
        fail("the loss became {} at step {}: fine-tuning stopped (try a lower --lr)", l, step);
      loss += l / micro;
    }
    cursor += take;

    // Clip over everything that trains, then step.
    float* grads = model_.grads();
    double sq = range.size() ? be.sum_squares(grads + range.begin, range.size()) : 0.0;
    for (const ExtraState& e : extras) sq += sum_of_squares(e.t.grads, e.t.n);
    const double norm = std::sqrt(sq);
    if (!std::isfinite(norm)) fail("the gradient norm became {} at step {}", norm, step);
    const float clip = clip_factor(norm, cfg_.grad_clip);
    const float lr = sched.at(step);
    if (opt) {
      if (clip != 1.0f) be.scale(grads + range.begin, range.size(), clip);
      opt->step(model_, lr);
      be.parameters_changed(model_.device_params(), model_.num_parameters());
    }
    if (!extras.empty()) {
      ++extra_t;
      const AdamWConfig& a = cfg_.adam;
      for (ExtraState& e : extras) {
        if (clip != 1.0f)
          for (size_t i = 0; i < e.t.n; ++i) e.t.grads[i] *= clip;
        ops::AdamWStep s{lr,
                         a.beta1,
                         a.beta2,
                         a.eps,
                         e.t.decay ? a.weight_decay : 0.0f,
                         1.0f - std::pow(a.beta1, static_cast<float>(extra_t)),
                         1.0f - std::pow(a.beta2, static_cast<float>(extra_t))};
        ops::adamw_update(e.t.params, e.t.grads, e.m.data(), e.v.data(), e.t.n, s);
      }
    }
    be.synchronize();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    metrics_line({{"step", step},
                  {"epoch", epoch},
                  {"loss", loss},
                  {"lr", lr},
                  {"grad_norm", norm},
                  {"examples", take},
                  {"elapsed_s", elapsed}});
    train_curve_.push_back({static_cast<double>(step), loss});
    if (bar_) {
      bar_->update(static_cast<uint64_t>(step), fmt::format("epoch {} · loss {:.4f}", epoch, loss));
    } else if (!cfg_.quiet && (step == 1 || step % 10 == 0 || step == total)) {
      log(fmt::format("step {:>5}/{} | epoch {} | loss {:.4f} | lr {:.3e} | norm {:.3f} | {:.0f} ms", step,
                      total, epoch, loss, lr, norm, dt * 1e3));
    }
    const bool epoch_end = cursor >= N;
    if ((cfg_.eval_every > 0 && step % cfg_.eval_every == 0) || epoch_end || step == total)
      evaluate(step, epoch, loss);
  }
  if (bar_) bar_->finish();
  if (cfg_.train.kind == TrainSelection::LastN) model_.unfreeze_all();
  if (lora_) {
    // The adapters on their own (PEFT's format), then merged into the model.
    if (cfg_.save && !cfg_.out_dir.empty()) save_lora(cfg_.out_dir, *lora_, cfg_.base_model);
    model_.attach_lora(nullptr);
    merge_lora(model_, *lora_);
  }
  result_.steps = total;
  result_.train_loss = loss;
  write_plot();
  if (cfg_.save && !cfg_.out_dir.empty()) {
    model_.set_dropout(0.0f);
    model_.download_parameters();
    save_model_dir(cfg_.out_dir, model_, tok_);
    task_.save(cfg_.out_dir, model_);
    log(fmt::format("done: {} steps, final train loss {:.4f}; model in {}", total, loss, cfg_.out_dir));
  }
  return result_;
}

}  // namespace

FinetuneResult finetune(GPT& model, const Tokenizer* tok, FinetuneTask& task, const FinetuneConfig& cfg) {
  Loop loop(model, tok, task, cfg);
  return loop.run();
}

}  // namespace gpt
