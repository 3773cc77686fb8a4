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

namespace gpt::cli {
namespace {

struct InfoArgs {
  ModelFlags model;
  std::string model_dir;
};

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
  c->callback([a] { run_info(*a); });
}

}  // namespace gpt::cli
