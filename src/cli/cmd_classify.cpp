// gpt finetune classify: a linear head on the last real token's hidden state, trained on labelled
// texts (finetune/classify.h); gpt classify: labels and probabilities from such a model.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/finetune_flags.h"
#include "core/io.h"
#include "core/parallel.h"
#include "finetune/classify.h"
#include "finetune/loop.h"
#include "finetune/records.h"
#include "io/model_dir.h"
#include "io/peft.h"
#include "model/lora.h"

namespace gpt::cli {
namespace {

struct ClassifyTrainArgs {
  FinetuneFlags ft;  // the loop's flags, shared with finetune instruct
  std::string model, train, val, test;
  ClassifyFields fields;
  int eval_batch = 32;
};

// Tokens of the pad position: never seen by a real token (right padding, causal attention).
TokenId pad_token(const Tokenizer& tok) { return tok.eot_token().value_or(0); }

void run_finetune_classify(const ClassifyTrainArgs& a) {
  LoadedModel lm = load_model_dir(a.model, WeightCheck::Fail);  // NaN weights cannot train
  if (!lm.tokenizer) fail("{} has no vocabulary files; classification needs the model's tokenizer", a.model);
  const Tokenizer& tok = *lm.tokenizer;
  GPT& model = lm.model;
  const ModelConfig& mc = model.config();
  FinetuneConfig cfg = resolve_finetune_flags(a.ft, mc.n_layer);

  const ReadOptions ro = read_options(a.ft);
  const std::vector<Record> train_r = read_records(a.train, ro);
  const std::vector<Record> val_r = read_records(a.val, ro);
  const std::vector<Record> test_r = a.test.empty() ? std::vector<Record>{} : read_records(a.test, ro);
  ClassifierInfo info;
  info.fields = a.fields;
  info.labels = collect_labels(train_r, a.fields, a.train);
  info.train = a.ft.trainable;
  const int max_len = resolve_max_len(a.ft, mc.n_ctx);
  info.max_len = max_len;
  ClassifySplit train = encode_split(train_r, a.train, a.fields, info.labels, tok, max_len);
  ClassifySplit val = encode_split(val_r, a.val, a.fields, info.labels, tok, max_len);
  ClassifySplit test;
  if (!a.test.empty()) test = encode_split(test_r, a.test, a.fields, info.labels, tok, max_len);
  for (const ClassifySplit* s : {&train, &val, &test})
    if (s->truncated)
      std::printf("%s: %zu of %zu texts longer than %d tokens, truncated\n", s->path.c_str(), s->truncated,
                  s->examples.size(), max_len);

  // What trains: the head always, plus what the loop trains (the model or its last N blocks, frozen
  // by the loop). LoRA adapters are the task's: they train beside the head without weight decay and
  // are saved unmerged beside the base model, which `gpt classify` attaches them to.
  std::unique_ptr<LoraAdapters> lora;
  if (cfg.train.kind == TrainSelection::Lora) {
    lora = attach_new_lora(model, cfg.lora, cfg.seed);
    cfg.train = {TrainSelection::None, 0};
  }

  ClassifyTask task(std::move(train), std::move(val), std::move(test), info, mc.n_embd, pad_token(tok),
                    a.eval_batch, cfg.seed);
  if (lora) task.set_lora(lora.get(), a.model);
  std::printf("labels: %s (from %s)\n", fmt::format("{}", fmt::join(info.labels, ", ")).c_str(),
              a.train.c_str());
  std::fflush(stdout);
  const FinetuneResult r = finetune(model, lm.tokenizer.get(), task, cfg);

  // Per-epoch summary, then the final val and test figures with confusion matrices.
  std::string s;
  for (const nlohmann::json& h : r.history)
    if (h.contains("val_accuracy"))
      s += fmt::format("epoch {}: step {}, val loss {:.4f}, val accuracy {:.4f}\n", h["epoch"].get<int>(),
                       h["step"].get<int>(), h["val_loss"].get<double>(), h["val_accuracy"].get<double>());
  nlohmann::ordered_json res;
  res["labels"] = info.labels;
  res["steps"] = r.steps;
  res["train_loss"] = r.train_loss;
  res["truncated"] = {{"train", task.split(Split::Train).truncated},
                      {"val", task.split(Split::Val).truncated},
                      {"test", task.split(Split::Test).truncated}};
  model.set_dropout(0.0f);
  nlohmann::ordered_json last;
  for (Split sp : {Split::Val, Split::Test}) {
    if (task.size(sp) == 0) continue;
    double acc = 0;
    const Confusion m = task.confusion(model, sp, &acc);
    s += fmt::format("{} accuracy: {:.4f} ({} examples)\n", split_name(sp), acc, task.size(sp));
    s += format_confusion(m, info.labels);
    res[split_name(sp)] = {
        {"examples", task.size(sp)}, {"accuracy", acc}, {"confusion", confusion_json(m, info.labels)}};
    last[std::string(split_name(sp)) + "_accuracy"] = acc;
  }
  write_file_atomic(cfg.out_dir + "/results.json", res.dump(2) + "\n");
  s += last.dump() + "\n";
  write_stdout(s);
}

struct ClassifyArgs {
  std::string model, input, text, text_b, format = "auto";
  int batch = 32, threads = 0;
  bool skip_bad = false;
};

void run_classify(const ClassifyArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  if (!a.text.empty() && !a.input.empty()) fail("give --text or --input, not both");
  if (!a.text_b.empty() && a.text.empty()) fail("--text-b is the second text of --text: give --text too");
  LoadedModel lm = load_model_dir(a.model, WeightCheck::Fail);  // nor classify
  if (!lm.tokenizer) fail("{} has no vocabulary files", a.model);
  ClassifierInfo info;
  const ClassifierHead head = load_classifier(a.model, lm.model.config().n_embd, &info);
  // A LoRA-trained classifier: the saved model is the base, the adapters sit beside it.
  std::unique_ptr<LoraAdapters> lora;
  if (file_exists(a.model + "/adapter_config.json")) {
    lora = std::make_unique<LoraAdapters>(load_lora(a.model, lm.model));
    lm.model.attach_lora(lora.get());
  }
  std::vector<Record> recs;
  std::string name;
  if (!a.text.empty()) {
    Record r;
    r.fields = {{info.fields.text, a.text}};
    if (!info.fields.text_b.empty()) {
      if (a.text_b.empty()) fail("this classifier takes text pairs: give --text-b too");
      r.fields[info.fields.text_b] = a.text_b;
    } else if (!a.text_b.empty()) {
      fail(
          "this classifier takes single texts, not pairs: --text-b has no place (it was trained without "
          "--text-b-field)");
    }
    r.line = 1;
    recs.push_back(std::move(r));
    name = "--text";
  } else {
    ReadOptions ro;
    ro.format = parse_record_format(a.format);
    ro.skip_bad_lines = a.skip_bad;
    if (a.input.empty()) {
      if (ro.format == RecordFormat::Auto) ro.format = RecordFormat::Jsonl;
      name = "<stdin>";
      recs = parse_records(read_stdin(), name, ro);
    } else {
      name = a.input;
      recs = read_records(a.input, ro);
    }
  }
  const ClassifySplit s =
      encode_split(recs, name, info.fields, info.labels, *lm.tokenizer, info.max_len, false);
  if (s.truncated)
    std::fprintf(stderr, "gpt: warning: %zu of %zu texts longer than %d tokens, truncated\n", s.truncated,
                 s.examples.size(), info.max_len);
  std::vector<float> probs;
  const std::vector<int> pred =
      classify_examples(lm.model, head, s.examples, pad_token(*lm.tokenizer), a.batch, &probs);
  std::string out;
  for (size_t i = 0; i < pred.size(); i++) {
    nlohmann::ordered_json j, p;
    for (size_t k = 0; k < info.labels.size(); k++) p[info.labels[k]] = probs[i * info.labels.size() + k];
    j["label"] = info.labels[pred[i]];
    j["probs"] = p;
    out += j.dump() + "\n";
  }
  write_stdout(out);
}

// A subcommand already registered under `parent`, or nullptr.
CLI::App* find_subcommand(CLI::App* parent, const std::string& name) {
  const auto found = parent->get_subcommands([&](CLI::App* c) { return c->get_name() == name; });
  return found.empty() ? nullptr : found.front();
}

}  // namespace

void add_finetune_classify(CLI::App* finetune) {
  if (find_subcommand(finetune, "classify")) return;
  auto a = std::make_shared<ClassifyTrainArgs>();
  FinetuneConfig& cfg = a->ft.cfg;  // classify's defaults (help shows them)
  cfg.epochs = 3;
  cfg.batch_size = 8;
  cfg.schedule.lr = 1e-4f;
  a->ft.min_lr = 0.0f;
  CLI::App* c = finetune->add_subcommand("classify",
                                         "Train a linear head on the last token's hidden state (with the "
                                         "model, its last N blocks or LoRA adapters)");
  c->add_option("--model,-m", a->model, "Pretrained model directory")->option_text("DIR")->required();
  c->add_option("--train", a->train, "Training records (JSONL, JSON, CSV or TSV)")
      ->option_text("FILE")
      ->required();
  c->add_option("--val", a->val, "Validation records (accuracy per epoch)")->option_text("FILE")->required();
  c->add_option("--test", a->test, "Test records (accuracy and confusion matrix at the end)")
      ->option_text("FILE");
  c->add_option("--text-field", a->fields.text, "Field with the text (default text)")->option_text("NAME");
  c->add_option("--label-field", a->fields.label, "Field with the label (default label)")
      ->option_text("NAME");
  c->add_option("--text-b-field", a->fields.text_b,
                "Second text of a pair (entailment, similarity): text <|endoftext|> text_b")
      ->option_text("NAME");
  c->add_option("--eval-batch", a->eval_batch, "Batch size of evaluation (default 32)")->option_text("B");
  add_finetune_flags(c, a->ft);
  c->callback([a] { run_finetune_classify(*a); });
}

void add_classify_command(CLI::App& app) {
  auto a = std::make_shared<ClassifyArgs>();
  CLI::App* c =
      app.add_subcommand("classify", "Labels and probabilities from a `gpt finetune classify` model");
  c->add_option("--model,-m", a->model, "Classifier directory (the --out of gpt finetune classify)")
      ->option_text("DIR")
      ->required();
  c->add_option("--input,-i", a->input,
                "Records to classify (JSONL, JSON, CSV, TSV; default: JSONL on stdin)")
      ->option_text("FILE");
  c->add_option("--text", a->text, "One text to classify")->option_text("TEXT");
  c->add_option("--text-b", a->text_b, "Its second text, for a pair classifier")->option_text("TEXT");
  c->add_option("--format", a->format, "auto (by extension), jsonl, json, csv, tsv")->option_text("FMT");
  c->add_flag("--skip-bad-lines", a->skip_bad, "Skip malformed lines instead of rejecting the input");
  c->add_option("--batch-size,-b", a->batch, "Texts per forward pass (default 32)")->option_text("B");
  c->add_option("--threads", a->threads, "Threads (default: all cores)")->option_text("N");
  c->callback([a] { run_classify(*a); });
}

}  // namespace gpt::cli
