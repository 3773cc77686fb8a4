// gpt bpe-train / gpt char-vocab: make a vocabulary from text.
#include <chrono>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "core/parallel.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt::cli {

namespace {

struct BpeTrainArgs {
  std::vector<std::string> inputs, specials;
  std::string out;
  size_t vocab_size = 0;
  uint64_t min_frequency = 2;
  int threads = 0;
};

void run_bpe_train(const BpeTrainArgs& a) {
  std::vector<std::string> texts;
  size_t total = 0;
  for (const auto& f : a.inputs) {
    texts.push_back(read_file(f));
    total += texts.back().size();
  }
  BpeTrainOptions opt;
  opt.vocab_size = a.vocab_size;
  opt.min_frequency = a.min_frequency;
  opt.special_tokens = a.specials;
  opt.threads = a.threads > 0 ? a.threads : num_threads();
  const bool tty = isatty(fileno(stderr));
  opt.progress = [tty](size_t done, size_t wanted) {
    if (tty) std::fprintf(stderr, "\rmerges: %zu / %zu", done, wanted);
  };
  auto t0 = std::chrono::steady_clock::now();
  BpeTrainResult res = train_bpe(texts, opt);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (tty) std::fprintf(stderr, "\n");
  const size_t n_merges = res.merges.size();
  BpeTokenizer tok(std::move(res.tokens), std::move(res.merges));
  tok.save(a.out);

  // Check what was written: reload it, round-trip every input, and measure the compression.
  auto loaded = load_tokenizer(a.out);
  size_t tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = loaded->encode(texts[i], {}, opt.threads);
    if (loaded->decode(ids) != texts[i]) fail("trained vocabulary does not round-trip {}", a.inputs[i]);
    tokens += ids.size();
  }
  std::string s;
  s += fmt::format("trained {} merges on {} bytes ({} distinct pre-tokens) in {:.2f} s\n", n_merges,
                   with_commas(total), with_commas(res.distinct_pretokens), secs);
  // Usually one token per merge; a merge whose bytes some earlier merge already built adds none.
  const size_t merged_tokens = loaded->vocab_size() - 256 - a.specials.size();
  s += fmt::format("vocabulary: {} tokens (256 bytes + {} merged{}) -> {}/vocab.json, {}/merges.txt\n",
                   loaded->vocab_size(), merged_tokens,
                   a.specials.empty() ? "" : fmt::format(" + {} special", a.specials.size()), a.out, a.out);
  s += fmt::format("training text: {} tokens, {:.3f} bytes/token (1.000 before merges)\n",
                   with_commas(tokens), tokens ? double(total) / double(tokens) : 0.0);
  if (loaded->vocab_size() < a.vocab_size)
    s += fmt::format("note: stopped early: no pair occurs {} times or more\n", a.min_frequency);
  write_stdout(s);
}

struct CharVocabArgs {
  std::vector<std::string> inputs;
  std::string out;
};

void run_char_vocab(const CharVocabArgs& a) {
  std::string all;
  for (const auto& f : a.inputs) all += read_file(f);
  CharTokenizer tok = CharTokenizer::from_text(all);
  tok.save(a.out);
  write_stdout(
      fmt::format("character vocabulary: {} characters -> {}/chars.json\n", tok.vocab_size(), a.out));
}

}  // namespace

void add_bpe_train_commands(CLI::App& app) {
  auto args = std::make_shared<BpeTrainArgs>();
  CLI::App* c =
      app.add_subcommand("bpe-train", "Learn a byte-level BPE vocabulary (GPT-2 pre-tokenization) from text");
  c->add_option("--input", args->inputs, "Training text file(s)")
      ->type_name("FILE")
      ->required()
      ->expected(1, -1);
  c->add_option("--vocab-size", args->vocab_size, "Total tokens: 256 bytes + merges + special tokens")
      ->type_name("N")
      ->required();
  c->add_option("--out", args->out, "Output vocabulary directory (vocab.json + merges.txt)")
      ->type_name("DIR")
      ->required();
  c->add_option("--special", args->specials, "Special token to add, e.g. '<|endoftext|>' (repeatable)")
      ->type_name("TOKEN");
  c->add_option("--min-frequency", args->min_frequency,
                "Stop when the best pair occurs fewer times (default 2)")
      ->type_name("N");
  c->add_option("--threads", args->threads, "Threads for counting (default: all cores)")
      ->type_name("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([args] { run_bpe_train(*args); });

  auto cargs = std::make_shared<CharVocabArgs>();
  CLI::App* v =
      app.add_subcommand("char-vocab", "Make a character-level vocabulary (sorted characters of the text)");
  v->add_option("--input", cargs->inputs, "Text file(s)")->type_name("FILE")->required()->expected(1, -1);
  v->add_option("--out", cargs->out, "Output directory (chars.json); use it as --tokenizer char:DIR")
      ->type_name("DIR")
      ->required();
  v->callback([cargs] { run_char_vocab(*cargs); });
}

}  // namespace gpt::cli
