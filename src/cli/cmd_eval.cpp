// gpt eval: mean next-token cross-entropy and perplexity of a model on a text or id file;
// multiple-choice accuracy (--choices, eval/choices.h); ROUGE and exact match (--rouge, eval/rouge.h).
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
#include "core/json.h"
#include "core/parallel.h"
#include "eval/choices.h"
#include "eval/evaluate.h"
#include "eval/rouge.h"
#include "finetune/records.h"
#include "finetune/summarize.h"
#include "finetune/template.h"
#include "generate/generator.h"
#include "io/hf_config.h"
#include "io/model_dir.h"
#include "tokenizer/ids_text.h"
#include "train/device_model.h"

namespace gpt::cli {
namespace {

struct EvalArgs {
  std::string model, text, ids, tokenizer, weights, device = "cpu";
  EvalOptions opt;
  int threads = 0;
  bool quiet = false;
  // --choices
  std::string choices, shots_file, predictions;
  int shots = 0;
  uint64_t seed = 1234;
  bool skip_bad = false;
  // --rouge
  bool rouge = false;
  std::string hyp, ref, hyp_field, ref_field;
  // --rouge --generate
  bool generate = false;
  std::string input, source_field = "text", hyp_out;
  int max_new_tokens = 64;
};

// True if DIR was written by `gpt quantize` (its config.json names the weight type).
bool quantized_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!file_exists(path)) return false;  // the loader reports it
  return parse_hf_config(read_file(path), path).quant.has_value();
}

// The texts of --hyp / --ref: one per line, or with a field name one JSON object per line.
std::vector<std::string> read_texts(const std::string& path, const std::string& field) {
  const std::string data = read_file(path);
  std::vector<std::string> out;
  size_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string line = data.substr(pos, end - pos);
    pos = end + 1;
    line_no++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (field.empty()) {
      out.push_back(std::move(line));
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::string why;
    if (const std::optional<nlohmann::json> j = try_parse_json(line, &why)) {
      if (!j->is_object() || !j->contains(field))
        why = fmt::format("missing field \"{}\"", field);
      else if (!(*j)[field].is_string())
        why = fmt::format("field \"{}\" is not a string", field);
      else
        out.push_back((*j)[field].get<std::string>());
    } else {
      why = "invalid JSON (" + why + ")";
    }
    // Never skipped: the texts that follow would pair with the wrong partners.
    if (!why.empty()) fail("{} line {}: {}", path, line_no, why);
  }
  return out;
}

// --generate: summaries of --input's source texts by the model (greedy, GPT-2's "TL;DR: " prompt,
// up to the first newline or <|endoftext|>), with the records' references beside them.
void summaries_for_rouge(const EvalArgs& a, std::vector<std::string>* hyp, std::vector<std::string>* ref) {
  if (a.model.empty()) fail("--rouge --generate needs --model DIR");
  if (a.input.empty())
    fail("--rouge --generate needs --input FILE (records with the source text and its reference)");
  if (!a.hyp.empty() || !a.ref.empty()) fail("--rouge --generate takes --input, not --hyp/--ref");
  if (a.max_new_tokens < 1) fail("--max-new-tokens must be at least 1");
  ReadOptions ro;
  ro.skip_bad_lines = a.skip_bad;
  const std::vector<Record> recs = read_records(a.input, ro);
  LoadedModel lm = load_for_inference(a.model);
  if (!lm.tokenizer) fail("{} has no vocabulary files", a.model);
  Generator gen(lm.model, lm.tokenizer);
  SummarizeOptions so;
  so.source_field = a.source_field;
  if (!a.ref_field.empty()) so.reference_field = a.ref_field;
  so.max_new_tokens = a.max_new_tokens;
  so.path = a.input;
  if (!a.quiet && isatty(2))
    so.progress = [](size_t i, size_t n) { std::fprintf(stderr, "\reval: summary %zu/%zu", i, n); };
  const std::vector<SummaryPair> pairs = generate_summaries(gen, recs, so);
  if (so.progress) std::fprintf(stderr, "\n");
  std::string out;
  for (size_t i = 0; i < pairs.size(); i++) {
    hyp->push_back(pairs[i].hypothesis);
    ref->push_back(pairs[i].reference);
    nlohmann::ordered_json j;
    j["index"] = i;
    j["hypothesis"] = pairs[i].hypothesis;
    j["reference"] = pairs[i].reference;
    out += j.dump() + "\n";
  }
  if (!a.hyp_out.empty()) write_file_atomic(a.hyp_out, out);
}

void run_rouge(const EvalArgs& a) {
  std::vector<std::string> hyp, ref;
  if (a.generate) {
    summaries_for_rouge(a, &hyp, &ref);
  } else {
    if (a.hyp.empty() || a.ref.empty()) fail("--rouge needs --hyp FILE and --ref FILE (or --generate)");
    hyp = read_texts(a.hyp, a.hyp_field);
    ref = read_texts(a.ref, a.ref_field);
  }
  if (hyp.size() != ref.size())
    fail("--hyp {} has {} texts but --ref {} has {}; they must pair up line by line", a.hyp, hyp.size(),
         a.ref, ref.size());
  const RougeScores r = rouge_corpus(hyp, ref);
  auto prf = [](const RougePRF& p) {
    nlohmann::ordered_json j;
    j["p"] = p.precision;
    j["r"] = p.recall;
    j["f"] = p.f;
    return j;
  };
  nlohmann::ordered_json j;
  j["pairs"] = hyp.size();
  j["rouge1"] = prf(r.rouge1);
  j["rouge2"] = prf(r.rouge2);
  j["rougeL"] = prf(r.rougeL);
  j["exact_match"] = r.exact_match;
  std::string s;
  s += fmt::format("pairs:       {}\n", hyp.size());
  s += fmt::format("ROUGE-1 F:   {:.4f}\nROUGE-2 F:   {:.4f}\nROUGE-L F:   {:.4f}\n", r.rouge1.f, r.rouge2.f,
                   r.rougeL.f);
  s += fmt::format("exact match: {:.4f}\n", r.exact_match);
  s += j.dump() + "\n";
  write_stdout(s);
}

void run_choices(const EvalArgs& a) {
  if (!a.text.empty() || !a.ids.empty()) fail("--choices takes no --text or --ids");
  if (!a.weights.empty()) fail("--choices runs the fp32 network: --weights is not supported with it");
  if (a.shots < 0) fail("--shots must be >= 0");
  if (a.shots > 0 && a.shots_file.empty())
    fail("--shots {} needs --shots-file FILE (solved examples)", a.shots);
  if (a.threads > 0) set_num_threads(a.threads);
  Backend& be = backend_for(a.device);
  auto warn = [](const std::string& m) { std::fprintf(stderr, "gpt: warning: %s\n", m.c_str()); };
  size_t skipped = 0;
  const std::vector<ChoiceExample> examples =
      parse_choice_jsonl(read_file(a.choices), a.choices, a.skip_bad, &skipped, warn);
  ChoiceEvalOptions opt;
  opt.shots = a.shots;
  opt.seed = a.seed;
  if (a.shots > 0)
    opt.shots_pool = parse_choice_jsonl(read_file(a.shots_file), a.shots_file, a.skip_bad, nullptr, warn);
  LoadedModel lm = load_model_dir(a.model);
  lm.model = on_backend(std::move(lm.model), be);
  std::shared_ptr<const Tokenizer> tok = lm.tokenizer;
  if (!a.tokenizer.empty()) tok = tokenizer_from_spec(a.tokenizer);
  if (!tok) fail("{} has no vocabulary files: pass --tokenizer SPEC", a.model);
  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](size_t done, size_t total) {
    if (!a.quiet && isatty(2)) std::fprintf(stderr, "\reval: example %zu/%zu", done, total);
  };
  const ChoiceEvalResult r = evaluate_choices(lm.model, *tok, examples, opt, progress);
  if (!a.quiet && isatty(2)) std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.predictions.empty()) {
    std::string out;
    for (const ChoicePrediction& p : r.predictions) {
      nlohmann::ordered_json j;
      j["index"] = p.index;
      j["scores_sum"] = p.scores.sum;
      j["scores_mean"] = p.scores.mean;
      j["pred"] = p.scores.pred;
      j["scores_per_char"] = p.scores.per_char;
      j["pred_norm"] = p.scores.pred_norm;
      j["pred_char"] = p.scores.pred_char;
      j["label"] = p.label;
      out += j.dump() + "\n";
    }
    write_file_atomic(a.predictions, out);
  }
  std::string s;
  s += fmt::format("model:         {} ({} parameters)\n", a.model,
                   with_commas(lm.model.config().num_parameters()));
  s += fmt::format("examples:      {} from {}{}\n", r.examples, a.choices,
                   skipped ? fmt::format(" ({} malformed line(s) skipped)", skipped) : "");
  if (a.shots > 0) s += fmt::format("shots:         {} from {} (seed {})\n", a.shots, a.shots_file, a.seed);
  s += fmt::format("truncated:     {} example(s) cut to the last {} tokens\n", r.truncated,
                   lm.model.config().n_ctx);
  s += fmt::format("accuracy:      {:.4f} ({}/{}, sum of log-probabilities)\n", r.accuracy, r.correct,
                   r.examples);
  s += fmt::format("accuracy_norm: {:.4f} ({}/{}, mean per token)\n", r.accuracy_norm, r.correct_norm,
                   r.examples);
  s += fmt::format("accuracy_char: {:.4f} ({}/{}, mean per character: lm-eval's acc_norm)\n", r.accuracy_char,
                   r.correct_char, r.examples);
  s += fmt::format("time:          {:.2f} s\n", secs);
  s += fmt::format("{{\"examples\": {}, \"accuracy\": {}, \"accuracy_norm\": {}, \"accuracy_char\": {}}}\n",
                   r.examples, r.accuracy, r.accuracy_norm, r.accuracy_char);
  write_stdout(s);
}

void run_eval(const EvalArgs& a) {
  if (a.rouge) {
    if (!a.choices.empty()) fail("give --rouge or --choices, not both");
    return run_rouge(a);
  }
  if (a.model.empty()) fail("--model DIR is required");
  if (!a.choices.empty()) return run_choices(a);
  if (a.text.empty() == a.ids.empty()) fail("give exactly one of --text FILE or --ids FILE");
  if (a.threads > 0) set_num_threads(a.threads);
  // Quantized weights (or --weights) run packed, as generation runs them; plain directories on the
  // training network's fp32 weights, as training measures its loss.
  const bool packed = !a.weights.empty() || quantized_dir(a.model);
  Backend& be = backend_for(a.device);  // before loading: a bad device is the first error
  LoadOptions load;
  load.backend = &be;
  LoadedModel lm = packed ? load_for_inference(a.model, a.device, a.weights, WeightCheck::Warn) : load_model_dir(a.model, load);
  std::shared_ptr<const Tokenizer> tok = lm.tokenizer;
  const ModelConfig& cfg = lm.model.config();
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
  EvalResult r = evaluate(lm.model, ids, a.opt, progress);
  if (!a.quiet && isatty(2)) std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string s;
  s += fmt::format("model:      {} ({} parameters)\n", a.model, with_commas(cfg.num_parameters()));
  if (lm.model.packed()) s += fmt::format("weights:    {} (packed)\n", ops::weight_type_name(lm.model.weight_type()));
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
      app.add_subcommand("eval",
                         "Mean next-token cross-entropy and perplexity of a model on a text; multiple-choice "
                         "accuracy (--choices); ROUGE and exact match (--rouge)");
  c->add_option("--model,-m", a->model, "Model directory")->option_text("DIR");
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
  c->add_option("--choices", a->choices,
                "Multiple-choice JSONL (HellaSwag: ctx, endings, label; or context, choices, answer): "
                "accuracy by summed and by mean token log-probabilities")
      ->option_text("FILE");
  c->add_option("--shots", a->shots, "Solved examples prepended to each context (with --shots-file)")
      ->option_text("K")
      ->check(CLI::Range(0, 1 << 16).description(""));
  c->add_option("--shots-file", a->shots_file, "Where the --shots examples come from (same formats)")
      ->option_text("FILE");
  c->add_option("--seed", a->seed, "Seed of the few-shot draw (default 1234)")->option_text("N");
  c->add_option("--predictions", a->predictions, "Write each example's scores and choices as JSONL")
      ->option_text("FILE");
  c->add_flag(
      "--skip-bad-lines", a->skip_bad,
      "Skip malformed --choices/--shots-file lines (with a warning each) instead of rejecting the file");
  c->add_flag("--rouge", a->rouge, "ROUGE-1/2/L and exact match of --hyp texts against --ref texts");
  c->add_option("--hyp", a->hyp, "Generated texts: one per line (or JSONL with --hyp-field)")
      ->option_text("FILE");
  c->add_option("--ref", a->ref, "Reference texts: one per line (or JSONL with --ref-field)")
      ->option_text("FILE");
  c->add_option("--hyp-field", a->hyp_field, "Read --hyp as JSONL, this field of each object")
      ->option_text("NAME");
  c->add_option("--ref-field", a->ref_field, "Read --ref as JSONL, this field of each object")
      ->option_text("NAME");
  c->add_flag("--generate", a->generate,
              "With --rouge: the model writes the hypotheses, greedy after GPT-2's \"TL;DR: \" prompt, for "
              "--input's "
              "records")
      ->needs("--rouge");
  c->add_option("--input", a->input,
                "With --generate: records (JSONL, JSON, CSV, TSV) with a source text and its "
                "reference (--source-field, --ref-field, default text and summary)")
      ->option_text("FILE");
  c->add_option("--source-field", a->source_field, "With --generate: the field to summarize (default text)")
      ->option_text("NAME");
  c->add_option("--max-new-tokens", a->max_new_tokens,
                "With --generate: tokens per summary at most (default 64)")
      ->option_text("N");
  c->add_option("--hyp-out", a->hyp_out, "With --generate: write the summaries and references as JSONL")
      ->option_text("FILE");
  c->callback([a] { run_eval(*a); });
}

}  // namespace gpt::cli
