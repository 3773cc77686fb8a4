// gpt eval: mean next-token cross-entropy and perplexity of a model on a text or id file.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "core/parallel.h"
#include "eval/evaluate.h"
#include "io/hf_config.h"
#include "io/model_dir.h"
#include "model/packed_model.h"
#include "tokenizer/ids_text.h"
#include "train/device_model.h"

namespace gpt::cli {
namespace {

struct EvalArgs {
  std::string model, text, ids, tokenizer, weights, device = "cpu";
  EvalOptions opt;
  int threads = 0;
  bool quiet = false;
};

// True if DIR was written by `gpt quantize` (its config.json names the weight type).
bool quantized_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!file_exists(path)) return false;  // the loader reports it
  return parse_hf_config(read_file(path), path).quant.has_value();
}

void run_eval(const EvalArgs& a) {
  if (a.text.empty() == a.ids.empty()) fail("give exactly one of --text FILE or --ids FILE");
  if (a.threads > 0) set_num_threads(a.threads);
  // Quantized weights (or --weights) run on the KV-cache decoder with packed matrices; plain
  // directories on the training network, as before.
  const bool packed = !a.weights.empty() || quantized_dir(a.model);
  if (packed && a.device != "cpu")
    fail("--device {}: packed and quantized weights run on the CPU's decoder only (use --device cpu)",
         a.device);
  Backend& be = backend_for(a.device);  // before loading: a bad device is the first error
  std::optional<LoadedModel> lm;
  std::optional<PackedModel> pm;
  std::shared_ptr<const Tokenizer> tok;
  if (packed) {
    std::optional<ops::WeightType> type;
    if (!a.weights.empty()) type = ops::parse_weight_type(a.weights);
    pm = load_packed_model(a.model, type);
    tok = pm->tokenizer;
  } else {
    lm = load_model_dir(a.model);
    lm->model = on_backend(std::move(lm->model), be);
    tok = lm->tokenizer;
  }
  const ModelConfig& cfg = packed ? pm->config : lm->model.config();
  std::vector<TokenId> ids;
  if (!a.ids.empty()) {
    ids = parse_ids(read_file(a.ids));
  } else {
    if (!a.tokenizer.empty()) tok = tokenizer_from_spec(a.tokenizer);
    if (!tok) fail("{} has no vocabulary files: pass --tokenizer SPEC or --ids FILE", a.model);
    ids = tok->encode(read_file(a.text), {}, num_threads());
  }
  if (ids.empty()) fail("the input is empty: nothing to evaluate");
  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](size_t done, size_t total) {
    if (!a.quiet && isatty(2)) std::fprintf(stderr, "\reval: window %zu/%zu", done, total);
  };
  EvalResult r = packed ? evaluate(*pm, ids, a.opt, progress) : evaluate(lm->model, ids, a.opt, progress);
  if (!a.quiet && isatty(2)) std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string s;
  s += fmt::format("model:      {} ({} parameters)\n", a.model, with_commas(cfg.num_parameters()));
  if (packed)
    s += fmt::format("weights:    {} (packed, KV-cache decoder)\n", ops::weight_type_name(pm->type));
  if (be.name() != "cpu") s += fmt::format("device:     {}\n", be.device_description());
  s += fmt::format("input:      {} tokens, {} windows of {} (stride {})\n", ids.size(), r.windows,
                   a.opt.seq_len > 0 ? a.opt.seq_len : cfg.n_ctx,
                   a.opt.stride > 0 ? a.opt.stride : (a.opt.seq_len > 0 ? a.opt.seq_len : cfg.n_ctx));
  s += fmt::format("loss:       {:.6f} nats/token over {} scored tokens\n", r.loss, r.tokens);
  s += fmt::format("perplexity: {:.4f}\n", r.perplexity);
  s += fmt::format("time:       {:.2f} s ({:.0f} tokens/s)\n", secs, static_cast<double>(r.tokens) / secs);
  nlohmann::json j = {{"tokens", r.tokens}, {"loss", r.loss}, {"perplexity", r.perplexity}};
  s += j.dump() + "\n";
  write_stdout(s);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* c =
      app.add_subcommand("eval", "Mean next-token cross-entropy and perplexity of a model on a text");
  c->add_option("--model,-m", a->model, "Model directory")->option_text("DIR")->required();
  c->add_option("--text", a->text, "Text file, encoded with the model's vocabulary")->option_text("FILE");
  c->add_option("--ids", a->ids, "Whitespace-separated token ids")->option_text("FILE");
  c->add_option("--tokenizer", a->tokenizer,
                "Vocabulary for --text instead of the model's: gpt2, char:DIR, bpe:DIR")
      ->option_text("SPEC");
  c->add_option("--seq-len", a->opt.seq_len, "Window length (default: the model's context)")
      ->option_text("T")
      ->check(CLI::Range(1, 1 << 20).description(""));
  c->add_option(
       "--stride", a->opt.stride,
       "Window step (default: the window length). Each token is scored once; with S < T every scored "
       "token after the first window sees at least T - S + 1 tokens of context")
      ->option_text("S")
      ->check(CLI::Range(1, 1 << 20).description(""));
  c->add_option("--batch-size,-b", a->opt.batch_size, "Windows per forward pass (default 1)")
      ->option_text("B")
      ->check(CLI::Range(1, 1 << 16).description(""));
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->add_option("--weights", a->weights,
                "Evaluate with packed weights: f32, bf16 or q8, converted on load (a quantized directory "
                "always runs packed, in its own type)")
      ->option_text("TYPE");
  c->add_option("--device", a->device,
                "Where the model runs: cpu (default), cuda, cuda-fp32; cpu-staged runs the CPU through the "
                "device code paths (tests)")
      ->option_text("DEVICE");
  c->add_flag("--quiet,-q", a->quiet, "No progress on stderr");
  c->callback([a] { run_eval(*a); });
}

}  // namespace gpt::cli
