// gpt finetune instruct: instruction tuning (Alpaca records), dialogue (chat messages) and
// summarization (text + summary) on a model directory, with the loss on response tokens only. The
// loop is finetune/loop.h; the data path is finetune/{records,template,instruct}.h.
#include <cmath>
#include <cstdio>

#include "cli/commands.h"
#include "cli/finetune_flags.h"
#include "core/error.h"
#include "core/io.h"
#include "finetune/instruct.h"
#include "io/model_dir.h"

namespace gpt::cli {
namespace {

struct InstructArgs {
  FinetuneFlags ft;
  std::string model_dir, data, val;
  double val_fraction = 0.1;
  std::string tmpl = "auto";
  bool pack = false;
};

void report_encoding(const std::string& what, const EncodeReport& r, size_t records, int max_len) {
  if (r.skipped)
    std::fprintf(stderr, "gpt: warning: %s: skipped %zu of %zu records the template rejected\n", what.c_str(),
                 r.skipped, records);
  if (r.truncated)
    std::fprintf(
        stderr, "gpt: note: %s: %zu of %zu records are longer than %d tokens and were truncated%s\n",
        what.c_str(), r.truncated, records, max_len,
        r.dropped ? fmt::format(" ({} kept no response token and were dropped)", r.dropped).c_str() : "");
}

void run_instruct(InstructArgs& a) {
  LoadedModel lm = load_model_dir(a.model_dir, WeightCheck::Fail);  // NaN weights cannot train
  if (!lm.tokenizer) fail("{} has no vocabulary files: instruction tuning needs its tokenizer", a.model_dir);
  const Tokenizer& tok = *lm.tokenizer;
  const TokenId eot = require_eot(tok);
  FinetuneConfig cfg = resolve_finetune_flags(a.ft, lm.model.config().n_layer);
  cfg.base_model = a.model_dir;
  const int max_len = resolve_max_len(a.ft, lm.model.config().n_ctx);
  const PromptTemplate kind = load_template(a.tmpl);

  ReadOptions ro = read_options(a.ft);
  std::vector<Record> train = read_records(a.data, ro);
  std::vector<Record> val;
  std::string val_name = a.val;
  if (!a.val.empty()) {
    val = read_records(a.val, ro);
  } else {
    if (!(a.val_fraction >= 0 && a.val_fraction < 1))
      fail("--val-fraction must be in [0, 1) (got {})", a.val_fraction);
    // A fixed split: the last fraction of the file, in file order.
    const size_t n_val = static_cast<size_t>(std::ceil(a.val_fraction * train.size()));
    if (n_val >= train.size()) fail("{}: too few records to hold out {} for validation", a.data, n_val);
    val.assign(train.end() - static_cast<std::ptrdiff_t>(n_val), train.end());
    train.resize(train.size() - n_val);
    val_name = a.data + " (last " + std::to_string(n_val) + ")";
  }
  EncodeReport tr, vr;
  auto train_ex = encode_records(train, tok, kind, max_len, a.data, a.ft.skip_bad_lines, &tr);
  report_encoding(a.data, tr, train.size(), max_len);
  std::vector<EncodedExample> val_ex;
  if (!val.empty()) {
    val_ex =
        encode_records(val, tok, kind, max_len, a.val.empty() ? a.data : a.val, a.ft.skip_bad_lines, &vr);
    report_encoding(val_name, vr, val.size(), max_len);
  }
  if (train_ex.empty()) fail("{}: no training examples left", a.data);
  size_t resp = 0;
  for (const auto& e : train_ex)
    for (uint8_t t : e.trained) resp += t;
  if (!cfg.quiet)
    std::printf("%s: %zu train examples (%zu response tokens), %zu val; template %s, %s to %d tokens\n",
                a.model_dir.c_str(), train_ex.size(), resp, val_ex.size(), a.tmpl.c_str(),
                a.pack ? "packed" : "padded", max_len);
  InstructTask task(std::move(train_ex), std::move(val_ex), eot, max_len, a.pack, cfg.batch_size);
  FinetuneResult r = finetune(lm.model, lm.tokenizer.get(), task, cfg);
  nlohmann::json info = {{"task", "instruct"}, {"template", a.tmpl},         {"max_len", max_len},
                         {"pack", a.pack},     {"base_model", a.model_dir},  {"data", a.data},
                         {"steps", r.steps},   {"train_loss", r.train_loss}, {"val", r.val}};
  write_file_atomic(cfg.out_dir + "/finetune.json", info.dump(2) + "\n");
}

}  // namespace

CLI::App* add_finetune_command(CLI::App& app) {
  CLI::App* ft = app.add_subcommand(
      "finetune",
      "Fine-tune a model: classify (a classification head) or instruct (instruction, chat, "
      "summarization)");
  ft->require_subcommand(1);
  auto a = std::make_shared<InstructArgs>();
  CLI::App* cmd = ft->add_subcommand(
      "instruct", "Instruction tuning on Alpaca, chat or summarization records, loss on the responses only");
  cmd->add_option("--model", a->model_dir, "Model directory to start from")->required();
  cmd->add_option("--data", a->data, "Training records: .jsonl, .json (array), .csv or .tsv")->required();
  cmd->add_option("--val", a->val, "Validation records (default: the last --val-fraction of --data)");
  cmd->add_option("--val-fraction", a->val_fraction, "Held out from the end of --data without --val")
      ->capture_default_str();
  cmd->add_option("--template", a->tmpl, "auto (by the fields), alpaca, chat, summarize, or a template file (JSON: prompt, response, stop with {field} placeholders)")
      ->capture_default_str();
  cmd->add_flag("--pack", a->pack, "Pack several examples per sequence (default: pad each batch)");
  a->ft.cfg.schedule.lr = 5e-5f;  // fine-tuning rates are far below pretraining's
  add_finetune_flags(cmd, a->ft);
  cmd->callback([a] { run_instruct(*a); });
  return ft;
}

}  // namespace gpt::cli
