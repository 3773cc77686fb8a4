// gpt prepare: tokenize text into llm.c token shards (train_*.bin, val_*.bin) + dataset.json.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/progress.h"
#include "data/dataset.h"

namespace gpt::cli {

namespace {

struct PrepareArgs {
  data::PrepareOptions opt;
  std::string vocab, tokenizer;
  bool quiet = false;
};

std::string plural(uint64_t n, const char* word) {
  return fmt::format("{} {}{}", with_commas(n), word, n == 1 ? "" : "s");
}

void run_prepare(PrepareArgs& a) {
  if (!a.vocab.empty() && !a.tokenizer.empty()) fail("give --vocab or --tokenizer, not both");
  a.opt.tokenizer = !a.vocab.empty() ? a.vocab : !a.tokenizer.empty() ? a.tokenizer : "gpt2";
  const std::string& t = a.tokenizer;
  if (!t.empty() && t != "gpt2" && t != "char" && !t.starts_with("char:") && !t.starts_with("bpe:") &&
      !std::filesystem::is_directory(t))
    fail("--tokenizer {}: expected gpt2, char, char:DIR, bpe:DIR or a vocabulary directory", t);
  if (!(a.opt.val_fraction >= 0 && a.opt.val_fraction < 1))
    fail("--val-fraction must be at least 0 and below 1 (got {})", a.opt.val_fraction);
  if (a.opt.shard_tokens < 1 || a.opt.shard_tokens > static_cast<uint64_t>(INT32_MAX))
    fail("--shard-tokens must be between 1 and {} (got {})", INT32_MAX, a.opt.shard_tokens);
  if (a.opt.jsonl_field.empty()) fail("--jsonl-field must not be empty");

  // On a terminal, a bar per phase; otherwise (a log file) a line every 30 s, so long runs show life.
  const auto t0 = std::chrono::steady_clock::now();
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  std::unique_ptr<Progress> bar;
  std::string phase;
  double last_log = 0;
  if (!a.quiet)
    a.opt.on_progress = [&](const data::PrepareProgress& p) {
      const double secs = since(t0);
      if (phase != p.phase) {
        if (bar) bar->finish();
        phase = p.phase;
        bar = std::make_unique<Progress>(phase == "scan" ? "scanning" : "tokenizing", p.bytes_total, "B");
      }
      const std::string extra =
          phase == "scan" ? std::string() : fmt::format("{} tokens", format_count(p.tokens));
      if (Progress::is_terminal()) {
        bar->update(p.bytes_done, extra);
      } else if (secs - last_log >= 30) {
        last_log = secs;
        std::fprintf(stderr, "gpt prepare: %s %.0f%% (%s of %s bytes)%s%s, %s elapsed\n", phase.c_str(),
                     p.bytes_total ? 100.0 * double(p.bytes_done) / double(p.bytes_total) : 100.0,
                     format_count(p.bytes_done).c_str(), format_count(p.bytes_total).c_str(),
                     extra.empty() ? "" : ", ", extra.c_str(), format_duration(secs).c_str());
      }
    };

  const data::DatasetInfo info = data::prepare_dataset(a.opt);
  if (bar) bar->finish();
  if (a.quiet) return;
  const double secs = since(t0);
  const std::string tok = info.tokenizer_kind == "gpt2"  ? "GPT-2 BPE"
                          : info.tokenizer_kind == "bpe" ? "BPE vocabulary"
                                                         : "character vocabulary";
  std::string s;
  s += fmt::format("prepared {}: {} from {} with the {} ({} tokens{})\n", a.opt.out_dir,
                   plural(info.documents, "document"), plural(info.inputs.size(), "file"), tok,
                   with_commas(info.vocab_size),
                   info.eot ? fmt::format(", <|endoftext|> = {}", *info.eot) : std::string());
  s += fmt::format("train: {} in {}\n", plural(info.train_tokens, "token"),
                   plural(info.train_shards, "shard"));
  s += fmt::format("val:   {} in {}\n", plural(info.val_tokens, "token"), plural(info.val_shards, "shard"));
  s += fmt::format("{} in {:.2f} s ({:.2f} MB/s)\n", plural(info.bytes, "byte"), secs,
                   secs > 0 ? double(info.bytes) / secs / 1e6 : 0.0);
  write_stdout(s);
}

}  // namespace

void add_prepare_command(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  data::PrepareOptions& o = args->opt;
  CLI::App* c = app.add_subcommand(
      "prepare", "Tokenize text into llm.c token shards (DIR/train_*.bin, val_*.bin) and DIR/dataset.json");
  c->add_option("--input", o.inputs,
                "Text file(s), one document each, or .jsonl files, one document per line")
      ->type_name("FILE")
      ->required()
      ->expected(1, -1);
  c->add_option("--out", o.out_dir, "Output dataset directory")->type_name("DIR")->required();
  c->add_option("--vocab", args->vocab, "BPE vocabulary directory (default: bundled GPT-2)")
      ->type_name("DIR");
  c->add_option("--tokenizer", args->tokenizer,
                "gpt2 (default), char (a character vocabulary built from the input), char:DIR or bpe:DIR")
      ->type_name("SPEC");
  c->add_option("--val-fraction", o.val_fraction,
                "Fraction of the data held out for validation (default 0.1)")
      ->type_name("F");
  c->add_option("--shard-tokens", o.shard_tokens, "Tokens per shard (default 100,000,000)")->type_name("N");
  c->add_option("--jsonl-field", o.jsonl_field, "JSONL field holding the text (default: text)")
      ->type_name("NAME");
  c->add_option("--threads", o.threads, "Threads for encoding (default: all cores)")
      ->type_name("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->add_option("--chunk-bytes", o.chunk_bytes, "Bytes read and encoded per step (default 8 MiB)")
      ->type_name("N")
      ->check(CLI::Range(size_t(1), size_t(1) << 32).description(""));
  c->add_flag("--force", o.force, "Replace a dataset already in DIR");
  c->add_flag("-q,--quiet", args->quiet, "Print nothing but errors");
  c->callback([args] { run_prepare(*args); });
}

}  // namespace gpt::cli
