// gpt inspect: inside one forward pass over a prompt: the residual stream around each LayerNorm,
// each head's attention entropy and the logit lens (generate/inspect.h), as text tables, JSON
// (--json) or an SVG heat map of the lens (--svg). See docs/inspect.md.
#include <memory>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/parallel.h"
#include "generate/inspect.h"
#include "io/model_dir.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {
namespace {

struct InspectArgs {
  std::string model, prompt, ids, weights, tokenizer, svg;
  InspectOptions opt;
  bool json = false;
  int threads = 0;
};

void run_inspect(const InspectArgs& a, const CLI::App* c) {
  if (a.threads > 0) set_num_threads(a.threads);
  if (c->count("--prompt") + c->count("--ids") != 1) fail("give one of --prompt and --ids");
  LoadedModel lm = load_for_inference(a.model, "cpu", a.weights);
  GPT& model = lm.model;
  std::shared_ptr<const Tokenizer> tok = lm.tokenizer;
  if (!a.tokenizer.empty()) tok = tokenizer_from_spec(a.tokenizer);
  std::vector<TokenId> ids;
  if (c->count("--ids")) {
    ids = parse_ids(a.ids);
  } else {
    if (!tok) fail("{} has no vocabulary to encode the prompt: pass --tokenizer SPEC or --ids", a.model);
    ids = tok->encode(a.prompt, AllowedSpecial::everything());
  }
  const Inspection r = inspect(model, ids, a.opt);
  if (!a.svg.empty()) write_inspection_svg(a.svg, r, tok.get());
  write_stdout(a.json ? inspection_json(r, tok.get()).dump() + "\n" : inspection_text(r, tok.get()));
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  CLI::App* c = app.add_subcommand(
      "inspect",
      "Look inside one forward pass: residual-stream statistics, attention entropy, the logit lens");
  c->add_option("--model,-m", a->model, "Model directory (plain or quantized)")
      ->option_text("DIR")
      ->required();
  c->add_option("--prompt,-p", a->prompt, "Prompt text")->option_text("TEXT");
  c->add_option("--ids", a->ids, "Prompt as token ids, e.g. \"464 2068 7586\"")->option_text("IDS");
  c->add_option("--top-k,-k", a->opt.top_k, "Tokens per logit-lens entry (default 5)")->option_text("K");
  c->add_flag("--all-positions", a->opt.all_positions, "The logit lens at every position, not only the last");
  c->add_flag("--json", a->json, "Print one JSON object instead of the tables");
  c->add_option("--svg", a->svg, "Also draw the logit lens as an SVG heat map into FILE")
      ->option_text("FILE");
  c->add_option("--weights", a->weights, "Pack the weights as f32, bf16 or q8 (default: as stored)")
      ->option_text("TYPE");
  c->add_option("--tokenizer", a->tokenizer, "Vocabulary (default: the model directory's)")
      ->option_text("SPEC");
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a, c] { run_inspect(*a, c); });
}

}  // namespace gpt::cli
