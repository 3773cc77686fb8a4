// gpt lora init: a new LoRA adapter directory (PEFT's layout and initialisation) for a base model.
// gpt lora merge: base + adapter -> a plain model directory with W += scale * (B A)^T.
// docs/lora.md.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <sstream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "io/hf_config.h"
#include "io/model_dir.h"
#include "io/peft.h"
#include "model/lora.h"

namespace gpt::cli {
namespace {

struct LoraInitArgs {
  std::string model, out, targets = "c_attn,c_proj,c_fc";
  int r = 8;
  float alpha = 16.0f, dropout = 0.05f;
  uint64_t seed = 1337;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string t; std::getline(in, t, ',');)
    if (!t.empty()) out.push_back(t);
  return out;
}

void run_lora_init(const LoraInitArgs& a) {
  // Only the base's config.json is needed: the adapter's shapes follow from it.
  const std::string cpath = a.model + "/config.json";
  const ModelConfig mc = config_from_hf_json(read_file(cpath), cpath);
  LoraConfig c;
  c.r = a.r;
  c.alpha = a.alpha;
  c.dropout = a.dropout;
  c.targets = split_commas(a.targets);
  LoraAdapters adapters(mc, c);
  adapters.init(a.seed);
  save_lora(a.out, adapters, a.model);
  const size_t base = mc.num_parameters();
  write_stdout(fmt::format(
      "wrote {}: r {}, alpha {}, targets {}; {} adapter parameters ({:.2f}% of the base's {})\n", a.out, c.r,
      c.alpha, a.targets, with_commas(adapters.num_parameters()),
      100.0 * static_cast<double>(adapters.num_parameters()) / static_cast<double>(base), with_commas(base)));
}

struct LoraMergeArgs {
  std::string model, adapter, out;
};

void run_lora_merge(const LoraMergeArgs& a) {
  if (std::filesystem::weakly_canonical(a.model) == std::filesystem::weakly_canonical(a.out))
    fail("--out must differ from --model");
  LoadedModel lm = load_model_dir(a.model);
  const LoraAdapters adapters = load_lora(a.adapter, lm.model);
  merge_lora(lm.model, adapters);
  save_model_dir(a.out, lm.model, lm.tokenizer.get());
  write_stdout(fmt::format("wrote {}: {} merged with {} ({} adapter matrices, scale {})\n", a.out, a.model,
                           a.adapter, adapters.layout().size(), adapters.scale()));
}

}  // namespace

void add_lora_commands(CLI::App& app) {
  CLI::App* lora = app.add_subcommand("lora", "LoRA adapters: create one, merge one into its base");
  lora->require_subcommand(1);

  auto in = std::make_shared<LoraInitArgs>();
  CLI::App* i =
      lora->add_subcommand("init", "Write a new adapter directory (PEFT layout, B = 0) for a base model");
  i->add_option("--model,-m", in->model, "Base model directory (its config.json)")
      ->option_text("DIR")
      ->required();
  i->add_option("--out,-o", in->out, "Adapter directory to write")->option_text("DIR")->required();
  i->add_option("--r", in->r, "Rank (default 8)")->option_text("N");
  i->add_option("--alpha", in->alpha, "Scale numerator: the update is alpha/r * B A (default 16)")
      ->option_text("X");
  i->add_option("--dropout", in->dropout, "Dropout on the adapters' input in training (default 0.05)")
      ->option_text("P");
  i->add_option("--targets", in->targets,
                "Comma-separated GPT-2 modules: c_attn, c_proj (both), c_fc, attn.c_proj, mlp.c_proj "
                "(default c_attn,c_proj,c_fc)")
      ->option_text("LIST");
  i->add_option("--seed", in->seed, "Random seed for A (default 1337)")->option_text("N");
  i->callback([in] { run_lora_init(*in); });

  auto mg = std::make_shared<LoraMergeArgs>();
  CLI::App* m = lora->add_subcommand("merge", "Fold an adapter into its base: a plain model directory");
  m->add_option("--model,-m", mg->model, "Base model directory")->option_text("DIR")->required();
  m->add_option("--adapter,-a", mg->adapter,
                "Adapter directory (adapter_config.json + adapter_model.safetensors)")
      ->option_text("DIR")
      ->required();
  m->add_option("--out,-o", mg->out, "Model directory to write")->option_text("DIR")->required();
  m->callback([mg] { run_lora_merge(*mg); });
}

}  // namespace gpt::cli
