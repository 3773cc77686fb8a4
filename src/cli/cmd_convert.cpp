// gpt convert: between checkpoint formats: Hugging Face model directories and llm.c .bin files.
#include <optional>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "io/llmc.h"
#include "io/model_dir.h"

namespace gpt::cli {

namespace {

struct ConvertArgs {
  std::string from_llmc, model, out, to_llmc, tokenizer;
};

void run_convert(const ConvertArgs& a) {
  if (a.from_llmc.empty() == a.model.empty()) fail("give one source: --from-llmc FILE or --model DIR");
  if (a.out.empty() == a.to_llmc.empty()) fail("give one destination: --out DIR or --to-llmc FILE");
  if (!a.tokenizer.empty() && a.out.empty())
    fail("--tokenizer goes with --out DIR: an llm.c checkpoint holds no vocabulary");

  std::string note;
  std::optional<GPT> loaded;
  std::shared_ptr<const Tokenizer> tok;
  if (!a.from_llmc.empty()) {
    loaded.emplace(load_llmc(a.from_llmc));
    if (!a.tokenizer.empty())
      tok = tokenizer_from_spec(a.tokenizer);
    else if (loaded->config().vocab_size == 50257)
      tok = gpt2_tokenizer();  // llm.c's GPT-2 checkpoints use GPT-2's vocabulary
    else
      note = "note: no vocabulary written (vocab_size is not GPT-2's 50257; give --tokenizer SPEC)\n";
  } else {
    LoadedModel m = load_model_dir(a.model);
    loaded.emplace(std::move(m.model));
    tok = a.tokenizer.empty() ? m.tokenizer : tokenizer_from_spec(a.tokenizer);
  }
  const GPT& model = *loaded;

  const ModelConfig& cfg = model.config();
  std::string what;
  if (!a.out.empty()) {
    save_model_dir(a.out, model, tok.get());
    what = fmt::format("{} (config.json, model.safetensors{})", a.out,
                       !tok                    ? ""
                       : tok->kind() == "char" ? "; character vocabulary in config.json"
                                               : ", vocab.json, merges.txt");
  } else {
    save_llmc(a.to_llmc, model);
    what = a.to_llmc;
  }
  write_stdout(fmt::format("wrote {}: {} parameters, {} layers, n_embd {}, vocab {}\n{}", what,
                           with_commas(model.num_parameters()), cfg.n_layer, cfg.n_embd, cfg.vocab_size,
                           note));
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* c = app.add_subcommand(
      "convert", "Convert a checkpoint: llm.c .bin <-> Hugging Face model directory, or re-save a directory");
  c->add_option("--from-llmc", args->from_llmc, "Read an llm.c checkpoint (e.g. gpt2_124M.bin)")
      ->type_name("FILE");
  c->add_option("--model", args->model, "Read a Hugging Face model directory")->type_name("DIR");
  c->add_option("--out", args->out, "Write a Hugging Face model directory (float32 model.safetensors)")
      ->type_name("DIR");
  c->add_option("--to-llmc", args->to_llmc, "Write an llm.c checkpoint (version 3, float32)")
      ->type_name("FILE");
  c->add_option("--tokenizer", args->tokenizer,
                "Vocabulary to write with --out: gpt2, DIR, bpe:DIR or char:DIR (default: the source's; "
                "GPT-2's for an llm.c file with 50257 tokens)")
      ->type_name("SPEC");
  c->callback([args] { run_convert(*args); });
}

}  // namespace gpt::cli
