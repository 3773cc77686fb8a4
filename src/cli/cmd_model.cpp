// gpt init: a new model directory with GPT-2's initialisation.
// gpt logits: one forward (and backward) pass on given ids, tensors written to a safetensors
// file: what the conformance tests compare against PyTorch and transformers, and a way to look
// inside the model.
#include <fmt/format.h>

#include <charconv>
#include <memory>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "core/io.h"
#include "core/memory.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/peft.h"
#include "model/lora.h"
#include "tokenizer/ids_text.h"
#include "train/device_model.h"

namespace gpt::cli {
namespace {

struct InitArgs {
  ModelFlags model;
  std::string out, tokenizer;
  uint64_t seed = 1337;
};

void run_init(const InitArgs& a) {
  // Without a shape, GPT-2 124M would be written (500 MB): ask for it by name instead.
  const ModelFlags& m = a.model;
  const bool shaped = m.n_layer || m.n_head || m.n_embd || m.context || m.vocab_size || m.band || m.ln ||
                      m.attention || m.no_bias || m.untied_head;  // --dropout is no shape
  if (m.preset.empty() && !shaped)
    fail(
        "give the model's shape: --preset NAME (gpt2 is 124M parameters, 498 MB) or shape flags such as "
        "--n-layer 4 --n-head 4 --n-embd 128");
  ModelConfig cfg = a.model.resolve("gpt2");
  std::shared_ptr<const Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    tok = tokenizer_from_spec(a.tokenizer);
  } else if (cfg.vocab_size == 50257) {
    tok = gpt2_tokenizer();
  }
  // A vocabulary given without --vocab-size sizes the model: one output row per token.
  if (tok && !a.tokenizer.empty() && !a.model.vocab_size)
    cfg.vocab_size = static_cast<int>(tok->vocab_size());
  if (tok && tok->vocab_size() > static_cast<size_t>(cfg.vocab_size))
    fail("the tokenizer has {} tokens but --vocab-size is {}", tok->vocab_size(), cfg.vocab_size);
  cfg.validate();
  require_memory(4 * cfg.num_parameters(),
                 fmt::format("the weights ({} parameters, fp32)", with_commas(cfg.num_parameters())));
  GPT model(cfg);
  model.init_gpt2(a.seed);
  save_model_dir(a.out, model, tok.get());
  write_stdout(fmt::format("wrote {}: {} parameters, {}\n", a.out, with_commas(model.num_parameters()),
                           tok ? fmt::format("{} vocabulary of {} tokens", tok->kind(), tok->vocab_size())
                               : std::string("no vocabulary files")));
}

struct LogitsArgs {
  std::string model, ids, targets, out, device = "cpu";
  std::string adapter;  // a LoRA adapter directory: grads are then the adapters' (grad.PEFT_NAME)
  bool grads = false;
};

void run_logits(const LogitsArgs& a) {
  Backend& be = backend_for(a.device);
  LoadedModel lm = load_model_dir(a.model);
  GPT model = on_backend(std::move(lm.model), be);
  const IdMatrix xm = parse_id_matrix(read_file(a.ids), a.ids, false);
  const int B = xm.rows, T = xm.cols;
  const std::vector<TokenId> x(xm.values.begin(), xm.values.end());
  std::vector<int32_t> y;
  if (!a.targets.empty()) {
    const IdMatrix ym = parse_id_matrix(read_file(a.targets), a.targets, true);
    if (ym.rows != B || ym.cols != T)
      fail("--targets has shape [{}, {}] but --ids has [{}, {}]", ym.rows, ym.cols, B, T);
    y.assign(ym.values.begin(), ym.values.end());
  }
  if (a.grads && y.empty()) fail("--grads needs --targets");
  const bool train = a.grads;
  // Dropout stays off: the tensors are a deterministic function of the weights and the ids.
  const ModelConfig& cfg = model.config();
  model.set_dropout(0.0f);
  std::unique_ptr<LoraAdapters> adapters;
  if (!a.adapter.empty()) {
    adapters = std::make_unique<LoraAdapters>(load_lora(a.adapter, model));
    model.attach_lora(adapters.get());
  }
  const float loss = model.forward(x.data(), y.empty() ? nullptr : y.data(), B, T, train);
  const size_t V = static_cast<size_t>(cfg.vocab_size);
  std::vector<float> logits(model.logits(), model.logits() + static_cast<size_t>(B) * T * V);
  std::vector<float> losses;
  if (!y.empty())
    losses.assign(model.position_losses(), model.position_losses() + static_cast<size_t>(B) * T);
  std::vector<TensorView> tensors;
  tensors.push_back({"logits", DType::F32, {B, T, static_cast<int64_t>(V)}, logits.data()});
  if (!y.empty()) {
    tensors.push_back({"loss", DType::F32, {1}, &loss});
    tensors.push_back({"position_losses", DType::F32, {B, T}, losses.data()});
  }
  std::vector<float> grads;  // host floats, downloaded from a device
  if (train) {
    model.zero_grad();
    model.backward();
    if (adapters) {  // the base is frozen: only the adapters have gradients
      for (const auto& t : adapters->layout())
        tensors.push_back({"grad." + t.name, DType::F32, t.shape, adapters->grads() + t.offset});
    } else {
      grads = host_gradients(model);
      for (const auto& p : model.layout())
        tensors.push_back({"grad." + p.name, DType::F32, p.shape, grads.data() + p.offset});
    }
  }
  write_safetensors(a.out, tensors, {{"format", "pt"}});
  std::string s = fmt::format("wrote {}: logits [{}, {}, {}]", a.out, B, T, V);
  if (!y.empty()) s += fmt::format(", loss {:.6f}", loss);
  if (train) s += fmt::format(", {} gradients", adapters ? adapters->layout().size() : model.layout().size());
  write_stdout(s + "\n");
}

}  // namespace

void add_model_commands(CLI::App& app) {
  auto init = std::make_shared<InitArgs>();
  CLI::App* c = app.add_subcommand(
      "init", "Create a model directory (Hugging Face layout) with GPT-2's initialisation");
  add_model_flags(c, init->model);
  c->add_option("--out,-o", init->out, "Directory to write")->option_text("DIR")->required();
  c->add_option("--seed", init->seed, "Random seed (default 1337)")->option_text("N");
  c->add_option(
       "--tokenizer", init->tokenizer,
       "Vocabulary to store with the model: gpt2, char:DIR or bpe:DIR (default: gpt2 when the vocabulary "
       "size is 50257, else none)")
      ->option_text("SPEC");
  c->callback([init] { run_init(*init); });

  auto lg = std::make_shared<LogitsArgs>();
  CLI::App* l = app.add_subcommand(
      "logits", "Run the model on token ids and write logits (and loss, gradients) to a safetensors file");
  l->add_option("--model,-m", lg->model, "Model directory")->option_text("DIR")->required();
  l->add_option("--ids", lg->ids, "Token ids: one sequence per line, all the same length")
      ->option_text("FILE")
      ->required();
  l->add_option("--targets", lg->targets, "Target ids, same shape; -1 = not scored")->option_text("FILE");
  l->add_option("--adapter", lg->adapter,
                "LoRA adapter directory to attach (--grads then writes its gradients)")
      ->option_text("DIR");
  l->add_flag("--grads", lg->grads, "Also write every parameter's gradient of the mean loss (grad.NAME)");
  l->add_option("--out,-o", lg->out, "safetensors file to write")->option_text("FILE")->required();
  l->add_option("--device", lg->device,
                "Where the model runs: cpu (default), cuda, cuda-fp32; cpu-staged runs the CPU through the "
                "device code paths (tests)")
      ->option_text("DEVICE");
  l->callback([lg] { run_logits(*lg); });
}

}  // namespace gpt::cli
