// gpt info: what this build is and what it runs on; with --preset / --model (and shape flags),
// a model's configuration and parameter count.
#include <fmt/format.h>

#include <memory>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "io/model_dir.h"
#include "ops/ops.h"
#include "core/memory.h"
#include "train/budget.h"
#include "train/step_bench.h"
#include <nlohmann/json.hpp>

namespace gpt::cli {
namespace {

struct InfoArgs {
  ModelFlags model;
  std::string model_dir;
  // --budget
  bool budget = false, measure = false;
  double tokens = 0, flops = 0;
  int batch = 8, seq = 0;
};

std::string si(double x) {  // 1.23e18 -> "1.23e18"; small numbers plainly
  return x < 1e6 ? fmt::format("{:.0f}", x) : fmt::format("{:.3g}", x);
}

std::string duration(double s) {
  if (s < 120) return fmt::format("{:.0f} s", s);
  if (s < 2 * 3600) return fmt::format("{:.1f} min", s / 60);
  if (s < 2 * 86400) return fmt::format("{:.1f} h", s / 3600);
  if (s < 2 * 365 * 86400.0) return fmt::format("{:.1f} days", s / 86400);
  return fmt::format("{:.3g} years", s / (365.25 * 86400));
}

// --budget: the cost of training the model (train/budget.h), optionally at a speed measured here.
void run_budget(const InfoArgs& a, const ModelConfig& cfg) {
  Backend& be = cpu_backend();
  BudgetOptions o;
  o.tokens = a.tokens;
  o.batch = a.batch;
  o.seq = a.seq;
  if (a.measure) {
    // The speed of the product's training step at B x T here: a warm-up step and two timed ones.
    const TrainingBudget plan = training_budget(cfg, be, o);
    require_memory(plan.total_bytes(), fmt::format("measuring a training step of {} at B={} T={}", cfg.preset,
                                                   plan.batch, plan.seq));
    StepBenchOptions so;
    so.batch = plan.batch;
    so.seq = plan.seq;
    so.warmup = 1;
    so.steps = 2;
    o.tokens_per_s = bench_train_step(cfg, be, so).tokens_per_s;
  }
  const TrainingBudget b = training_budget(cfg, be, o);
  std::string s;
  s += fmt::format("model              {} ({} parameters)\n", cfg.preset, with_commas(b.parameters));
  s += fmt::format("tokens             {}{}\n", si(b.tokens),
                   b.tokens_by_rule ? fmt::format(" ({:.0f} per parameter: compute-optimal)", kTokensPerParameter)
                                    : "");
  s += fmt::format("training FLOPs     {} ({:.3g} GFLOP per token at T = {}: 6 N + attention)\n", si(b.flops),
                   b.flops_per_token / 1e9, b.seq);
  s += fmt::format("memory             {} at B = {}, T = {}, fp32 AdamW:\n", format_bytes(b.total_bytes()),
                   b.batch, b.seq);
  s += fmt::format("  weights          {}\n", format_bytes(b.weight_bytes));
  s += fmt::format("  gradients        {}\n", format_bytes(b.gradient_bytes));
  s += fmt::format("  AdamW moments    {}\n", format_bytes(b.optimizer_bytes));
  s += fmt::format("  activations      {} (the training network's plan)\n", format_bytes(b.activation_bytes));
  if (b.tokens_per_s > 0) {
    s += fmt::format("speed here         {:.0f} tokens/s (two training steps at B = {}, T = {} measured on {})\n",
                     b.tokens_per_s, b.batch, b.seq, cpu().summary());
    s += fmt::format("time here          {}\n", duration(b.seconds));
  }
  nlohmann::json j = {{"preset", cfg.preset},
                      {"parameters", b.parameters},
                      {"tokens", b.tokens},
                      {"flops", b.flops},
                      {"flops_per_token", b.flops_per_token},
                      {"batch", b.batch},
                      {"seq_len", b.seq},
                      {"memory_bytes", b.total_bytes()},
                      {"activation_bytes", b.activation_bytes},
                      {"tokens_per_s", b.tokens_per_s > 0 ? nlohmann::json(b.tokens_per_s) : nlohmann::json(nullptr)},
                      {"seconds", b.tokens_per_s > 0 ? nlohmann::json(b.seconds) : nlohmann::json(nullptr)}};
  if (a.flops > 0) {
    const ComputeOptimal c = compute_optimal(a.flops);
    s += fmt::format("compute-optimal    for {} FLOPs: about {} parameters on {} tokens (D = 20 N, C = 6 N D)\n",
                     si(a.flops), si(c.parameters), si(c.tokens));
    j["optimal_parameters"] = c.parameters;
    j["optimal_tokens"] = c.tokens;
  }
  s += j.dump() + "\n";
  write_stdout(s);
}

std::string describe_model(const ModelConfig& c) {
  std::string s = c.describe();
  s += fmt::format("parameters         {}{}\n", with_commas(c.num_parameters()),
                   c.tied_head ? " (LM head tied to wte, counted once)" : "");
  s += fmt::format("fp32 weights       {:.1f} MB\n", static_cast<double>(c.num_parameters()) * 4 / 1e6);
  s += fmt::format("train FLOPs/token  {:.1f} MFLOP at T = {}\n", c.train_flops_per_token(c.n_ctx) / 1e6,
                   c.n_ctx);
  return s;
}

void run_info(const InfoArgs& a) {
  if (!a.budget && (a.measure || a.tokens != 0 || a.flops != 0))
    fail("--measure, --tokens and --flops go with --budget");
  if (a.budget) {
    if (!a.model_dir.empty() && (!a.model.preset.empty() || a.model.any_shape()))
      fail("give --model or --preset/shape flags, not both");
    if (a.tokens < 0) fail("--tokens must be >= 0");
    if (a.flops < 0) fail("--flops must be >= 0");
    const ModelConfig cfg =
        a.model_dir.empty() ? a.model.resolve("gpt2") : load_model_dir(a.model_dir).model.config();
    return run_budget(a, cfg);
  }
  if (!a.model_dir.empty()) {
    if (!a.model.preset.empty() || a.model.any_shape())
      fail("give --model or --preset/shape flags, not both");
    LoadedModel lm = load_model_dir(a.model_dir);
    std::string s = fmt::format("model directory    {}\n", a.model_dir);
    s += describe_model(lm.model.config());
    s += fmt::format("vocabulary         {}\n",
                     lm.tokenizer
                         ? fmt::format("{}, {} tokens", lm.tokenizer->kind(), lm.tokenizer->vocab_size())
                         : std::string("none in the directory (ids only)"));
    write_stdout(s);
    return;
  }
  if (!a.model.preset.empty() || a.model.any_shape()) {
    write_stdout(describe_model(a.model.resolve("gpt2")));
    return;
  }
  auto tok = gpt2_tokenizer();
  std::string s;
  s += fmt::format("gpt.cpp {}\n", GPT_VERSION);
  s += fmt::format("cpu:        {}\n", cpu().summary());
  s += fmt::format("threads:    {}\n", num_threads());
  s += fmt::format("kernels:    {} (ops), {} sgemm (matrix products)\n", ops::kernel_level(),
                   ops::gemm_library());
  std::string cuda = "not built (no CUDA toolkit at build time)";
  if (cuda_backend_built()) {
    try {
      cuda = "built; " + backend_for("cuda").device_description();
    } catch (const Error& e) {
      cuda = std::string("built; unavailable here: ") + e.what();
    }
  }
  s += fmt::format("devices:    cpu; cuda: {}\n", cuda);
  s += fmt::format("vocabulary: bundled GPT-2 byte-level BPE, {} tokens, <|endoftext|> = {}\n",
                   tok->vocab_size(), tok->eot_token().value_or(0));
  std::string presets;
  for (const auto& n : preset_names()) presets += (presets.empty() ? "" : ", ") + n;
  s += fmt::format("presets:    {}\n", presets);
  write_stdout(s);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  CLI::App* c = app.add_subcommand(
      "info",
      "Show the build and CPU; with --preset or --model, a model's configuration and parameter count");
  add_model_flags(c, a->model);
  c->add_option("--model,-m", a->model_dir, "Model directory to describe")->option_text("DIR");
  c->add_flag("--budget", a->budget,
              "What training the model costs: FLOPs, memory (fp32 AdamW at -b x -t), time at a measured speed");
  c->add_option("--tokens", a->tokens, "With --budget: training tokens (default 20 per parameter)");
  c->add_option("--batch-size,-b", a->batch, "With --budget: sequences per step for the memory plan (default 8)");
  c->add_option("--seq-len,-t", a->seq, "With --budget: tokens per sequence (default the context)");
  c->add_flag("--measure", a->measure,
              "With --budget: time two training steps here and give the training time at that speed");
  c->add_option("--flops", a->flops, "With --budget: also the compute-optimal size for this many FLOPs");
  c->callback([a] { run_info(*a); });
}

}  // namespace gpt::cli
