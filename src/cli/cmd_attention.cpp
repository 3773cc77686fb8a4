// gpt attention: one head's attention probabilities over a prompt, as the JSON object the
// playground's attention view gets from POST /v1/attention (serve/attention.h). For looking at a
// model from the shell and for the PyTorch check (tests/torch_attention.py).
#include <memory>
#include <optional>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/parallel.h"
#include "model/packed_model.h"
#include "serve/attention.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {
namespace {

struct AttentionArgs {
  std::string model, prompt, ids, weights, tokenizer;
  int layer = 0, head = 0, threads = 0;
};

void run_attention(const AttentionArgs& a, const CLI::App* c) {
  if (a.threads > 0) set_num_threads(a.threads);
  if (c->count("--prompt") + c->count("--ids") != 1) fail("give one of --prompt and --ids");
  std::optional<ops::WeightType> type;
  if (!a.weights.empty()) type = ops::parse_weight_type(a.weights);
  const PackedModel model = load_packed_model(a.model, type, WeightCheck::Fail);
  std::shared_ptr<const Tokenizer> tok = model.tokenizer;
  if (!a.tokenizer.empty()) tok = tokenizer_from_spec(a.tokenizer);
  std::vector<TokenId> ids;
  if (c->count("--ids")) {
    ids = parse_ids(a.ids);
    for (TokenId id : ids)
      if (id >= static_cast<TokenId>(model.config.vocab_size))
        fail("token id {} is out of range for a vocabulary of {}", id, model.config.vocab_size);
  } else {
    if (!tok) fail("{} has no vocabulary to encode the prompt: pass --tokenizer SPEC or --ids", a.model);
    ids = tok->encode(a.prompt, AllowedSpecial::everything());
  }
  // token strings need ids inside the vocabulary; a random model's may be wider than it
  bool tok_covers = tok != nullptr;
  for (TokenId id : ids) tok_covers = tok_covers && id < tok->vocab_size();
  write_stdout(attention_json(model, tok_covers ? tok.get() : nullptr, ids, a.layer, a.head).dump() + "\n");
}

}  // namespace

void add_attention_command(CLI::App& app) {
  auto a = std::make_shared<AttentionArgs>();
  CLI::App* c = app.add_subcommand(
      "attention", "Print one attention head's probabilities over a prompt as JSON (the playground's view)");
  c->add_option("--model,-m", a->model, "Model directory (plain or quantized)")
      ->option_text("DIR")
      ->required();
  c->add_option("--prompt,-p", a->prompt, "Prompt text")->option_text("TEXT");
  c->add_option("--ids", a->ids, "Prompt as token ids, e.g. \"464 2068 7586\"")->option_text("IDS");
  c->add_option("--layer", a->layer, "Layer, from 0 (default 0)")->option_text("L");
  c->add_option("--head", a->head, "Head, from 0 (default 0)")->option_text("H");
  c->add_option("--weights", a->weights, "Pack the weights as f32, bf16 or q8 (default: as stored)")
      ->option_text("TYPE");
  c->add_option("--tokenizer", a->tokenizer, "Vocabulary (default: the model directory's)")
      ->option_text("SPEC");
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a, c] { run_attention(*a, c); });
}

}  // namespace gpt::cli
