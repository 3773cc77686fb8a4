// gpt eval: mean next-token cross-entropy and perplexity of a model on a text or id file.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "core/parallel.h"
#include "eval/evaluate.h"
#include "io/model_dir.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {
namespace {

struct EvalArgs {
  std::string model, text, ids, tokenizer;
  EvalOptions opt;
  int threads = 0;
  bool quiet = false;
};

void run_eval(const EvalArgs& a) {
  if (a.text.empty() == a.ids.empty()) fail("give exactly one of --text FILE or --ids FILE");
  if (a.threads > 0) set_num_threads(a.threads);
  LoadedModel lm = load_model_dir(a.model);
  std::vector<TokenId> ids;
  if (!a.ids.empty()) {
    ids = parse_ids(read_file(a.ids));
  } else {
    std::shared_ptr<const Tokenizer> tok = lm.tokenizer;
    if (!a.tokenizer.empty()) tok = tokenizer_from_spec(a.tokenizer);
    if (!tok) fail("{} has no vocabulary files: pass --tokenizer SPEC or --ids FILE", a.model);
    ids = tok->encode(read_file(a.text), {}, num_threads());
  }
  if (ids.empty()) fail("the input is empty: nothing to evaluate");
  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](size_t done, size_t total) {
    if (!a.quiet && isatty(2)) std::fprintf(stderr, "\reval: window %zu/%zu", done, total);
  };
  EvalResult r = evaluate(lm.model, ids, a.opt, progress);
  if (!a.quiet && isatty(2)) std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string s;
  s += fmt::format("model:      {} ({} parameters)\n", a.model, with_commas(lm.model.num_parameters()));
  s += fmt::format(
      "input:      {} tokens, {} windows of {} (stride {})\n", ids.size(), r.windows,
      a.opt.seq_len > 0 ? a.opt.seq_len : lm.model.config().n_ctx,
      a.opt.stride > 0 ? a.opt.stride : (a.opt.seq_len > 0 ? a.opt.seq_len : lm.model.config().n_ctx));
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
  c->add_flag("--quiet,-q", a->quiet, "No progress on stderr");
  c->callback([a] { run_eval(*a); });
}

}  // namespace gpt::cli
