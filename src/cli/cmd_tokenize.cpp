// gpt tokenize / gpt detokenize
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "core/json.h"
#include "core/parallel.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {

namespace {

struct TokenizeArgs {
  std::string vocab, tokenizer, input, output;
  bool allow_special = false, stats = false, batch_jsonl = false;
  int threads = 0;
};

// One JSON string per input line -> one JSON array of ids per output line.
void run_batch_jsonl(const Tokenizer& tok, const std::string& input, const AllowedSpecial& allowed) {
  std::string out;
  size_t pos = 0, line_no = 0;
  while (pos < input.size()) {
    size_t eol = input.find('\n', pos);
    if (eol == std::string::npos) eol = input.size();
    std::string_view line(input.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (line.empty()) continue;
    const nlohmann::json j = parse_json(line, fmt::format("--batch-jsonl: line {}", line_no));
    if (!j.is_string()) fail("--batch-jsonl: line {} is not a JSON string", line_no);
    out += nlohmann::json(tok.encode(j.get_ref<const std::string&>(), allowed)).dump();
    out += '\n';
  }
  write_stdout(out);
}

void run_tokenize(const TokenizeArgs& a) {
  auto tok = pick_tokenizer(a.vocab, a.tokenizer);
  const std::string text = a.input.empty() ? read_stdin() : read_file(a.input);
  const AllowedSpecial allowed = a.allow_special ? AllowedSpecial::everything() : AllowedSpecial::none();
  if (a.batch_jsonl) return run_batch_jsonl(*tok, text, allowed);

  // Only the BPE encoder splits work across threads; a character vocabulary is a table lookup.
  const int threads = tok->kind() != "bpe" ? 1 : a.threads > 0 ? a.threads : num_threads();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<TokenId> ids = tok->encode(text, allowed, threads);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (!a.output.empty()) write_file_atomic(a.output, format_ids(ids));
  if (!a.stats) {
    if (a.output.empty()) write_stdout(format_ids(ids));
    return;
  }
  std::string s;
  s += fmt::format("input:       {}\n", a.input.empty() ? "<stdin>" : a.input);
  s += fmt::format("tokenizer:   {} ({} ids)\n", tok->kind(), tok->vocab_size());
  s += fmt::format("bytes:       {}\n", with_commas(text.size()));
  s += fmt::format("tokens:      {}\n", with_commas(ids.size()));
  s += fmt::format("bytes/token: {:.3f}\n", ids.empty() ? 0.0 : double(text.size()) / double(ids.size()));
  s += fmt::format("time:        {:.1f} ms on {} thread{} ({:.1f} MB/s)\n", secs * 1e3, threads,
                   threads == 1 ? "" : "s", secs > 0 ? double(text.size()) / secs / 1e6 : 0.0);
  write_stdout(s);
}

struct DetokenizeArgs {
  std::string vocab, tokenizer, input;
};

void run_detokenize(const DetokenizeArgs& a) {
  auto tok = pick_tokenizer(a.vocab, a.tokenizer);
  const std::string text = a.input.empty() ? read_stdin() : read_file(a.input);
  write_stdout(tok->decode(parse_ids(text)));
}

}  // namespace

void add_tokenize_commands(CLI::App& app) {
  auto targs = std::make_shared<TokenizeArgs>();
  CLI::App* t = app.add_subcommand("tokenize", "Encode text into token ids (one per line on stdout)");
  t->add_option("--vocab", targs->vocab,
                "Vocabulary directory (encoder.json+vocab.bpe, vocab.json+merges.txt, tokenizer.json or "
                "chars.json); "
                "default: bundled GPT-2")
      ->type_name("DIR");
  t->add_option("--tokenizer", targs->tokenizer, "gpt2 (default), char:DIR or bpe:DIR")->type_name("SPEC");
  t->add_flag("--allow-special", targs->allow_special,
              "Recognise special tokens such as <|endoftext|> (otherwise they are ordinary text)");
  t->add_option("--input", targs->input, "Read the text from FILE instead of stdin")->type_name("FILE");
  t->add_option("--output", targs->output,
                "Write the ids to FILE (atomically, one per line) instead of stdout")
      ->type_name("FILE");
  t->add_flag("--stats", targs->stats,
              "Print statistics (bytes, tokens, bytes/token, throughput) instead of the ids");
  t->add_flag("--batch-jsonl", targs->batch_jsonl,
              "Each input line is a JSON string; print one JSON array of ids per line");
  t->add_option("--threads", targs->threads, "Threads for encoding (default: all cores)")
      ->type_name("N");  // checked like every --threads (main.cpp)
  t->callback([targs] { run_tokenize(*targs); });

  auto dargs = std::make_shared<DetokenizeArgs>();
  CLI::App* d =
      app.add_subcommand("detokenize", "Decode whitespace-separated token ids (stdin) into raw bytes");
  d->add_option("--vocab", dargs->vocab, "Vocabulary directory; default: bundled GPT-2")->type_name("DIR");
  d->add_option("--tokenizer", dargs->tokenizer, "gpt2 (default), char:DIR or bpe:DIR")->type_name("SPEC");
  d->add_option("--input", dargs->input, "Read the ids from FILE instead of stdin")->type_name("FILE");
  d->callback([dargs] { run_detokenize(*dargs); });
}

}  // namespace gpt::cli
