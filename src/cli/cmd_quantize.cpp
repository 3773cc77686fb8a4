// gpt quantize: a model directory re-saved with bf16 or q8 weight matrices (docs/quantization.md).
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/parallel.h"
#include "io/model_dir.h"

namespace gpt::cli {
namespace {

struct QuantizeArgs {
  std::string model, out, type;
  int threads = 0;
};

// Bytes of a directory's weight files (model.safetensors or its shards).
uint64_t weight_file_bytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file(ec) && name.starts_with("model") && name.ends_with(".safetensors"))
      n += e.file_size(ec);
  }
  return n;
}

void run_quantize(const QuantizeArgs& a) {
  const ops::WeightType type = ops::parse_weight_type(a.type);
  if (type == ops::WeightType::F32) fail("--type must be bf16 or q8 (gpt convert re-saves as f32)");
  if (a.threads > 0) set_num_threads(a.threads);
  if (std::filesystem::weakly_canonical(a.model) == std::filesystem::weakly_canonical(a.out))
    fail("--out must differ from --model");
  // Through fp32, whatever the source holds (a q8 source is dequantized first).
  LoadedModel lm = load_model_dir(a.model);
  const size_t parameters = lm.model.num_parameters();
  lm.model.pack(type);
  save_model_dir(a.out, lm.model, lm.tokenizer.get());
  const uint64_t before = weight_file_bytes(a.model), after = weight_file_bytes(a.out);
  std::string s;
  s += fmt::format("model:   {} ({} parameters)\n", a.model, with_commas(parameters));
  s += fmt::format("before:  {:.1f} MB of safetensors\n", before / 1e6);
  s += fmt::format("after:   {:.1f} MB in {}/model.safetensors ({}{}), {:.2f}x smaller\n", after / 1e6, a.out,
                   ops::weight_type_name(type),
                   type == ops::WeightType::Q8 ? ": int8 weights, one half-precision scale per 32 inputs"
                                               : ": bfloat16 matrices, fp32 biases, LayerNorms and wpe",
                   after > 0 ? static_cast<double>(before) / after : 0.0);
  s += fmt::format("memory:  {:.1f} MB packed for inference\n", lm.model.weight_bytes() / 1e6);
  write_stdout(s);
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* c = app.add_subcommand(
      "quantize", "Re-save a model directory with bf16 or int8 (q8) weight matrices for inference");
  c->add_option("--model,-m", a->model, "Model directory to read")->option_text("DIR")->required();
  c->add_option("--out,-o", a->out, "Directory to write (files written atomically, one by one)")
      ->option_text("DIR")
      ->required();
  c->add_option("--type", a->type, "bf16 or q8")->option_text("TYPE")->required();
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a] { run_quantize(*a); });
}

}  // namespace gpt::cli
