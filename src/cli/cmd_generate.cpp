// gpt generate: text from a model, streamed token by token (sampling, greedy or beam search).
// Formats: text (the generated text), ids (one line of ids per sample), jsonl (one object per
// token). See docs/sampling.md. The decoder (docs/kv-cache.md) runs on --device (the CPU by default).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <utility>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "core/parallel.h"
#include "finetune/template.h"
#include "generate/generator.h"
#include "io/model_dir.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt, prompt_file, prompt_ids, format = "text", weights, tokenizer, device = "cpu";
  GenerateSettings s;
  std::optional<uint64_t> seed;
  bool no_kv_cache = false;
  int threads = 0;
  std::string instruction, input;  // --instruction: the Alpaca prompt of finetune/template.h
  std::string logit_bias;          // --logit-bias ID:BIAS,...
};

// A token as the --show-probs picture shows it: its text, quoted as JSON quotes strings.
std::string show_token(const Tokenizer* tok, TokenId id) {
  if (!tok) return fmt::format("#{}", id);
  return nlohmann::json(sanitize_utf8(tok->token_bytes(id))).dump();
}

// Writes samples in order: sample 0 as it streams; a later sample's output is held until every
// earlier sample has finished, then written at once and streamed from there on.
class OrderedOutput {
 public:
  explicit OrderedOutput(int samples) : held_(samples), done_(samples, 0) {}
  void write(int sample, std::string_view s) {
    if (sample == head_) {
      write_stdout(s);
    } else {
      held_[sample] += s;
    }
  }
  void finish(int sample) {
    done_[sample] = 1;
    while (head_ < static_cast<int>(done_.size()) && done_[head_]) {
      head_++;
      if (head_ < static_cast<int>(held_.size()) && !held_[head_].empty()) {
        write_stdout(held_[head_]);
        held_[head_].clear();
      }
    }
  }

 private:
  std::vector<std::string> held_;
  std::vector<char> done_;
  int head_ = 0;
};

std::vector<TokenId> read_prompt(const GenerateArgs& a, const CLI::App* c, const Tokenizer* tok) {
  const size_t given = c->count("--prompt") + c->count("--prompt-file") + c->count("--prompt-ids") +
                       c->count("--instruction");
  if (given > 1) fail("give at most one of --prompt, --prompt-file, --prompt-ids and --instruction");
  if (c->count("--input") && !c->count("--instruction")) fail("--input goes with --instruction");
  if (c->count("--instruction")) {
    if (a.instruction.empty()) fail("--instruction is empty");
    if (!tok) fail("{} has no vocabulary to encode the instruction: pass --tokenizer SPEC", a.model);
    // Encoded as fine-tuning encodes it (ordinary text, one segment), so the ids match training's.
    return tok->encode(instruction_prompt(a.instruction, a.input), AllowedSpecial::none());
  }
  if (c->count("--prompt-ids")) return parse_ids(a.prompt_ids);
  std::string text;
  if (c->count("--prompt")) {
    text = a.prompt;
  } else if (c->count("--prompt-file")) {
    text = read_file(a.prompt_file);
  } else if (!isatty(0)) {
    text = read_stdin();  // a terminal is not read: no prompt given means an empty one
  }
  if (text.empty()) return {};
  if (!tok) fail("{} has no vocabulary to encode the prompt: pass --tokenizer SPEC or --prompt-ids", a.model);
  return tok->encode(text, AllowedSpecial::everything(), num_threads());
}

void run_generate(GenerateArgs a, const CLI::App* c) {
  if (a.threads > 0) set_num_threads(a.threads);
  if (a.format != "text" && a.format != "ids" && a.format != "jsonl")
    fail("--format must be text, ids or jsonl, got '{}'", a.format);
  GenerateSettings& s = a.s;
  // Flags that contradict each other are errors, not silently ignored.
  const char* sampling_flags[] = {"--temperature", "--top-k", "--top-p", "--min-p"};
  for (const char* f : sampling_flags) {
    if (s.beams > 0 && c->count(f)) fail("--beam is deterministic search: it cannot be combined with {}", f);
    if (s.sampling.greedy && c->count(f))
      fail("--greedy takes the most probable token: {} does not apply", f);
  }
  if (s.beams > 0 && s.sampling.greedy) fail("--beam and --greedy are different searches: give one");
  for (const char* f : {"--frequency-penalty", "--presence-penalty", "--logit-bias"})
    if (s.beams > 0 && c->count(f)) fail("--beam scores the model's own log-probabilities: {} does not apply", f);
  if (!a.logit_bias.empty()) {
    try {
      s.sampling.logit_bias = parse_id_biases(a.logit_bias);
    } catch (const Error& e) {
      fail("--logit-bias: {}", e.what());
    }
  }
  if (c->count("--length-penalty") && s.beams == 0) fail("--length-penalty applies to --beam only");
  s.kv_cache = !a.no_kv_cache;
  s.logprobs = a.format == "jsonl";  // only jsonl prints them
  s.sampling.seed = a.seed ? *a.seed : std::random_device{}();
  s.validate();  // settings before the model: a typo fails fast

  LoadedModel lm = load_for_inference(a.model, a.device, a.weights);
  Generator gen(lm.model, lm.tokenizer);
  const ModelConfig& cfg = lm.model.config();
  if (!a.tokenizer.empty()) gen.set_tokenizer(tokenizer_from_spec(a.tokenizer));
  const Tokenizer* tok = gen.tokenizer().get();
  if (!tok && a.format == "text")
    fail("{} has no vocabulary to turn ids into text: pass --tokenizer SPEC or use --format ids", a.model);
  if (tok && tok->vocab_size() > static_cast<size_t>(cfg.vocab_size))
    fail("the vocabulary has {} tokens but the model only {}", tok->vocab_size(), cfg.vocab_size);
  for (const auto& [id, bias] : s.sampling.logit_bias)
    if (id >= static_cast<TokenId>(cfg.vocab_size))
      fail("--logit-bias: token id {} is out of range for a vocabulary of {}", id, cfg.vocab_size);

  std::vector<TokenId> prompt = read_prompt(a, c, tok);
  const int n_ctx = cfg.n_ctx;
  if (prompt.size() > static_cast<size_t>(n_ctx)) {
    std::fprintf(stderr,
                 "gpt: warning: the prompt has %zu tokens, more than the model's context of %d: "
                 "using its last %d\n",
                 prompt.size(), n_ctx, n_ctx);
    prompt.erase(prompt.begin(), prompt.end() - n_ctx);
  }

  const int K = s.num_samples;
  OrderedOutput out(K);
  std::vector<std::vector<TokenId>> ids(K);
  std::vector<std::string> texts(K);
  auto on_token = [&](const TokenEvent& ev) {
    if (a.format == "jsonl") {
      // ordered_json: the keys in the documented order
      nlohmann::ordered_json j = {{"sample", ev.sample},
                                  {"step", ev.step},
                                  {"id", ev.id},
                                  {"text", std::string(ev.text)},
                                  {"logprob", ev.logprob}};
      if (s.show_probs > 0) {
        nlohmann::ordered_json top = nlohmann::ordered_json::array();
        for (const auto& [id, lp] : ev.top) top.push_back({id, lp});
        j["top"] = std::move(top);
      }
      write_stdout(j.dump() + "\n");  // every token at once, whatever its sample
      return;
    }
    if (a.format == "ids") {
      ids[ev.sample].push_back(ev.id);
      if (ev.last) {
        out.write(ev.sample, fmt::format("{}\n", fmt::join(ids[ev.sample], " ")));
        out.finish(ev.sample);
      }
      return;
    }
    if (s.show_probs > 0) {  // the "predict, sample, repeat" picture: one line per step, then the text
      std::string line = fmt::format("step {:>3}:", ev.step);
      for (const auto& [id, lp] : ev.top)
        line += fmt::format("  {} {:.3g}%", show_token(tok, id), 100.0 * std::exp(lp));
      line += fmt::format("  -> {}\n", show_token(tok, ev.id));
      out.write(ev.sample, line);
      texts[ev.sample] += ev.text;
      if (ev.last) out.write(ev.sample, texts[ev.sample]);
    } else {
      out.write(ev.sample, ev.text);
    }
    if (ev.last) {
      out.write(ev.sample, "\n");
      if (K > 1) out.write(ev.sample, "---------------\n");  // between samples, as nanoGPT's sample.py
      out.finish(ev.sample);
    }
  };
  gen.generate(prompt, s, on_token);
  // Samples without tokens (--max-new-tokens 0) still get their (empty) lines.
  if (s.max_new_tokens == 0 && a.format != "jsonl") write_stdout(std::string(static_cast<size_t>(K), '\n'));
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* c = app.add_subcommand(
      "generate",
      "Generate text from a model: sampling (temperature, top-k, top-p, min-p), greedy or beam search");
  c->add_option("--model,-m", a->model, "Model directory (plain or quantized)")
      ->option_text("DIR")
      ->required();
  c->add_option("--prompt,-p", a->prompt,
                "Prompt text (default: standard input; empty: start from <|endoftext|>)")
      ->option_text("TEXT");
  c->add_option("--prompt-file", a->prompt_file, "Prompt text from a file")->option_text("FILE");
  c->add_option("--prompt-ids", a->prompt_ids, "Prompt as token ids, e.g. \"464 2068 7586\"")
      ->option_text("IDS");
  c->add_option("--instruction", a->instruction,
                "Prompt with the Alpaca instruction template (gpt finetune instruct); stops at <|endoftext|>")
      ->option_text("TEXT");
  c->add_option("--input", a->input, "The instruction's input (with --instruction)")->option_text("TEXT");
  c->add_option("--max-new-tokens,-n", a->s.max_new_tokens, "Tokens to generate per sample (default 100)")
      ->option_text("N")
      ->check(CLI::Range(0, 1 << 24).description(""));
  c->add_flag("--greedy", a->s.sampling.greedy,
              "Always take the most probable token (Hugging Face do_sample=False)");
  c->add_option("--temperature,-t", a->s.sampling.temperature,
                "Divide the logits by T (default 1; 0 = greedy)")
      ->option_text("T");
  c->add_option("--top-k", a->s.sampling.top_k, "Keep the K most probable tokens (default 50; 0 = off)")
      ->option_text("K");
  c->add_option("--top-p", a->s.sampling.top_p,
                "Keep the smallest set of tokens whose probability reaches P (default 1 = off)")
      ->option_text("P");
  c->add_option("--min-p", a->s.sampling.min_p,
                "Keep tokens at least P times as probable as the most probable (default 0 = off)")
      ->option_text("P");
  c->add_option("--repetition-penalty", a->s.sampling.repetition_penalty,
                "Penalise tokens already in the text, CTRL-style (default 1 = off; 1.2 is common)")
      ->option_text("R");
  c->add_option("--frequency-penalty", a->s.sampling.frequency_penalty,
                "Subtract F x (times a token was generated) from its logit, as OpenAI (default 0; [-2, 2])")
      ->option_text("F");
  c->add_option("--presence-penalty", a->s.sampling.presence_penalty,
                "Subtract P from the logit of every token generated so far, as OpenAI (default 0; [-2, 2])")
      ->option_text("P");
  c->add_option("--logit-bias", a->logit_bias,
                "Add BIAS to token ID's logit before sampling, as OpenAI's logit_bias: \"50256:-100,198:2\"")
      ->option_text("ID:BIAS,...");
  c->add_option("--beam", a->s.beams, "Length-normalised beam search with N beams instead of sampling")
      ->option_text("N")
      ->check(CLI::Range(1, 1024).description(""));
  c->add_option("--length-penalty", a->s.length_penalty,
                "Beam score = sum of log-probabilities / length^X (default 1)")
      ->option_text("X");
  c->add_option("--stop", a->s.stop, "End a sample where its text contains STR (repeatable; not printed)")
      ->option_text("STR");
  c->add_option("--seed", a->seed, "Random seed (default: a random one)")->option_text("S");
  c->add_option("--num-samples", a->s.num_samples,
                "Independent samples, run as one batch (with --beam: the best N hypotheses)")
      ->option_text("K")
      ->check(CLI::Range(1, 4096).description(""));
  c->add_option("--format", a->format,
                "text (default), ids (one line per sample) or jsonl (one object per token)")
      ->option_text("FMT");
  c->add_flag("--no-kv-cache", a->no_kv_cache,
              "Re-run the whole context for every token (slow; a reference)");
  c->add_option("--show-probs", a->s.show_probs,
                "Show the N most probable next tokens of the model at each step")
      ->option_text("N")
      ->check(CLI::Range(0, 1 << 20).description(""));
  c->add_option("--weights", a->weights, "Convert the weights on load: f32, bf16 or q8 (default: as stored)")
      ->option_text("TYPE");
  c->add_option("--device", a->device,
                "cpu (default), cuda (bf16), cuda-fp32, or cpu-staged (tests)")
      ->option_text("DEV");
  c->add_option("--tokenizer", a->tokenizer, "Vocabulary instead of the model's: gpt2, char:DIR, bpe:DIR")
      ->option_text("SPEC");
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a, c] { run_generate(*a, c); });
}

}  // namespace gpt::cli
