// gpt eval: mean next-token cross-entropy and perplexity of a model on a text or id file;
// multiple-choice accuracy (--choices, eval/choices.h); ROUGE, BLEU, exact match and diversity of
// given texts (--rouge/--bleu, eval/text_metrics.h) or of a model's answers under a fine-tuning
// template (--generate, finetune/generation_eval.h).
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
#include "eval/text_metrics.h"
#include "finetune/generation_eval.h"
#include "finetune/records.h"
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
  // --rouge / --bleu (the same scores) on --hyp and --ref
  bool rouge = false, bleu = false, json = false;
  std::string hyp, ref, hyp_field, ref_field;
  // --generate
  bool generate = false;
  std::string input, source_field = "text", out, tmpl = "auto", format = "auto";
  int max_new_tokens = 64;
  SamplingSettings sampling;
};

// True if DIR was written by `gpt quantize` (its config.json names the weight type).
bool quantized_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!file_exists(path)) return false;  // the loader reports it
  return parse_hf_config(read_file(path), path).quant.has_value();
}

std::string table_line(const char* name, const RougePRF& p) {
  return fmt::format("{:<15}{:.4f}  {:.4f}  {:.4f}\n", name, p.precision, p.recall, p.f);
}

// The scores as a table, then (last line) the JSON object; with --json the JSON alone.
void print_scores(const TextScores& t, bool json_only, std::string s = "") {
  if (json_only) return write_stdout(text_scores_json(t).dump() + "\n");
  const BleuScore& b = t.bleu;
  s += fmt::format("pairs:         {}\n", t.pairs);
  s += fmt::format("{:<15}P       R       F\n", "");
  s += table_line("ROUGE-1", t.rouge.rouge1);
  s += table_line("ROUGE-2", t.rouge.rouge2);
  s += table_line("ROUGE-L", t.rouge.rougeL);
  s += fmt::format("BLEU:          {:.2f} ({:.1f}/{:.1f}/{:.1f}/{:.1f}, BP {:.3f}, {} tokens against {})\n",
                   b.score, b.precisions[0], b.precisions[1], b.precisions[2], b.precisions[3],
                   b.brevity_penalty, b.hyp_len, b.ref_len);
  s += fmt::format("exact match:   {:.4f}\n", t.rouge.exact_match);
  s += fmt::format("distinct-1:    {:.4f} ({} words)\n", t.diversity.distinct1, t.diversity.unigrams);
  s += fmt::format("distinct-2:    {:.4f} ({} bigrams)\n", t.diversity.distinct2, t.diversity.bigrams);
  s += fmt::format("repetition:    {:.4f} ({} 4-grams, repeats within an output)\n", t.diversity.repetition,
                   t.diversity.repetition_ngrams);
  s += text_scores_json(t).dump() + "\n";
  write_stdout(s);
}

// --rouge / --bleu: texts given in two files.
void run_score(const EvalArgs& a) {
  if (a.hyp.empty() || a.ref.empty())
    fail("--rouge/--bleu need --hyp FILE and --ref FILE (or --generate with --model and --input)");
  print_scores(score_text_files(a.hyp, a.hyp_field, a.ref, a.ref_field), a.json);
}

// --generate: the model answers --input's records under a fine-tuning template; the answers are
// written (--out) and scored against the records' references.
void run_generate(EvalArgs a, const CLI::App* c) {
  if (a.model.empty()) fail("--generate needs --model DIR");
  if (a.input.empty()) fail("--generate needs --input FILE (records with the prompt fields and a reference)");
  if (!a.hyp.empty() || !a.ref.empty()) fail("--generate takes --input, not --hyp/--ref");
  if (!a.choices.empty()) fail("give --generate or --choices, not both");
  if (a.max_new_tokens < 1) fail("--max-new-tokens must be at least 1");
  GenerationEvalOptions opt;
  opt.tmpl = load_template(a.tmpl);
  opt.text_field = a.source_field;
  opt.reference_field = a.ref_field;
  opt.path = a.input;
  opt.out_path = a.out;
  GenerateSettings& gs = opt.settings;
  gs.max_new_tokens = a.max_new_tokens;
  gs.sampling = a.sampling;
  // Greedy unless a sampling flag is given.
  const bool sampled = c->count("--temperature") || c->count("--top-k") || c->count("--top-p");
  gs.sampling.greedy = !sampled;
  gs.sampling.seed = a.seed;
  gs.validate();  // settings before the model: a typo fails fast
  if (a.threads > 0) set_num_threads(a.threads);
  ReadOptions ro;
  ro.format = parse_record_format(a.format);
  ro.skip_bad_lines = a.skip_bad;
  const std::vector<Record> recs = read_records(a.input, ro);
  LoadedModel lm = load_for_inference(a.model, a.device, a.weights);
  if (!lm.tokenizer) fail("{} has no vocabulary files", a.model);
  Generator gen(lm.model, lm.tokenizer);
  if (!a.quiet && isatty(2))
    opt.progress = [](size_t i, size_t n) { std::fprintf(stderr, "\reval: record %zu/%zu", i, n); };
  const GenerationEval r = evaluate_generation(gen, recs, opt);
  if (opt.progress) std::fprintf(stderr, "\n");
  std::string s;
  s += fmt::format("model:         {} ({} parameters)\n", a.model,
                   with_commas(lm.model.config().num_parameters()));
  s += fmt::format("records:       {} from {} (template {})\n", recs.size(), a.input, a.tmpl);
  const SamplingSettings& sm = gs.sampling;
  s += sm.is_greedy()
           ? fmt::format("decoding:      greedy, at most {} new tokens\n", gs.max_new_tokens)
           : fmt::format(
                 "decoding:      sampled (temperature {}, top-k {}, top-p {}, seed {}), at most {} "
                 "new tokens\n",
                 sm.temperature, sm.top_k, sm.top_p, a.seed, gs.max_new_tokens);
  if (!a.out.empty()) s += fmt::format("outputs:       {}\n", a.out);
  print_scores(r.scores, a.json, s);
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
      j["scores_per_char"] = p.scores.per_char;
      j["pred"] = p.scores.pred;
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

void run_eval(const EvalArgs& a, const CLI::App* c) {
  if (a.generate) return run_generate(a, c);
  // Flags of --generate alone are errors elsewhere, not silently ignored.
  for (const char* f : {"--input", "--template", "--format", "--source-field", "--max-new-tokens",
                        "--temperature", "--top-k", "--top-p", "--out"})
    if (c->count(f)) fail("{} applies to --generate", f);
  if (a.json && !a.rouge && !a.bleu) fail("--json applies to --rouge/--bleu and --generate");
  if (a.rouge || a.bleu) {
    if (!a.choices.empty()) fail("give --rouge/--bleu or --choices, not both");
    return run_score(a);
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
  LoadedModel lm = packed ? load_for_inference(a.model, a.device, a.weights, WeightCheck::Warn)
                          : load_model_dir(a.model, load);
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
  if (lm.model.packed())
    s += fmt::format("weights:    {} (packed)\n", ops::weight_type_name(lm.model.weight_type()));
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
  CLI::App* c = app.add_subcommand(
      "eval",
      "Mean next-token cross-entropy and perplexity of a model on a text; multiple-choice "
      "accuracy (--choices); ROUGE, BLEU, exact match and diversity of given texts (--rouge/--bleu) or of "
      "the model's answers (--generate)");
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
  c->add_option("--seed", a->seed, "Seed of the few-shot draw and of --generate's sampling (default 1234)")
      ->option_text("N");
  c->add_option("--predictions", a->predictions, "Write each example's scores and choices as JSONL")
      ->option_text("FILE");
  c->add_flag(
      "--skip-bad-lines", a->skip_bad,
      "Skip malformed --choices/--shots-file lines (with a warning each) instead of rejecting the file");
  c->add_flag(
      "--rouge", a->rouge,
      "Score --hyp texts against --ref texts: ROUGE-1/2/L, BLEU, exact match, distinct-1/2, repetition");
  c->add_flag("--bleu", a->bleu, "The same as --rouge (every score is printed)");
  c->add_flag("--json", a->json, "With --rouge/--bleu/--generate: print only the JSON object of the scores");
  c->add_option("--hyp", a->hyp, "Generated texts: one per line (or JSONL with --hyp-field)")
      ->option_text("FILE");
  c->add_option("--ref", a->ref, "Reference texts: one per line (or JSONL with --ref-field)")
      ->option_text("FILE");
  c->add_option("--hyp-field", a->hyp_field, "Read --hyp as JSONL, this field of each object")
      ->option_text("NAME");
  c->add_option(
       "--ref-field", a->ref_field,
       "Read --ref as JSONL, this field of each object; with --generate, the records' reference field "
       "(default: the template's: output, summary, or the last assistant message)")
      ->option_text("NAME");
  c->add_flag(
      "--generate", a->generate,
      "The model answers --input's records under a fine-tuning --template; the answers are scored against "
      "the records' references (as --rouge/--bleu)");
  c->add_option("--input", a->input,
                "With --generate: records (JSONL, JSON, CSV, TSV) with the prompt fields and a reference")
      ->option_text("FILE");
  c->add_option(
       "--template", a->tmpl,
       "With --generate: auto (by the fields), alpaca, chat, summarize (TL;DR) or a template file, as gpt "
       "finetune instruct")
      ->capture_default_str();
  c->add_option("--format", a->format,
                "With --generate: --input's format: auto (by extension), jsonl, json, csv, tsv")
      ->capture_default_str();
  c->add_option("--source-field", a->source_field,
                "With --generate --template summarize: the field to summarize (default text)")
      ->option_text("NAME");
  c->add_option("--max-new-tokens", a->max_new_tokens,
                "With --generate: tokens per answer at most (default 64)")
      ->option_text("N");
  c->add_option("--temperature,-t", a->sampling.temperature,
                "With --generate: sample instead of greedy, logits divided by T (default 1; 0 = greedy)")
      ->option_text("T");
  c->add_option("--top-k", a->sampling.top_k,
                "With --generate: sample from the K most probable tokens (default 50; 0 = off)")
      ->option_text("K");
  c->add_option(
       "--top-p", a->sampling.top_p,
       "With --generate: sample from the smallest set of tokens whose probability reaches P (default 1)")
      ->option_text("P");
  c->add_option("--out,--hyp-out", a->out,
                "With --generate: write the answers and references as JSONL (index, template, hypothesis, "
                "reference, finish)")
      ->option_text("FILE");
  c->callback([a, c] { run_eval(*a, c); });
}

}  // namespace gpt::cli
