// gpt bench tokenizer: encoding throughput, one thread and all threads, with an id check.
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/corpus.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/cpu.h"
#include "core/io.h"
#include "core/parallel.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {

namespace {

struct BenchTokArgs {
  std::string input, vocab, tokenizer, write_corpus, check_ids;
  size_t bytes = 5'500'000;
  int threads = 0, repeat = 5;
};

void run_bench_tokenizer(const BenchTokArgs& a) {
  auto tok = pick_tokenizer(a.vocab, a.tokenizer);
  std::string text, source;
  if (a.input.empty()) {
    text = make_mixed_corpus(a.bytes);
    source = fmt::format("generated mixed corpus (seeded; `--write-corpus FILE` saves it)");
  } else {
    text = read_file(a.input);
    source = a.input;
  }
  if (!a.write_corpus.empty()) write_file_atomic(a.write_corpus, text);
  const int all = a.threads > 0 ? a.threads : num_threads();
  const int repeat = std::max(1, a.repeat);

  auto time_encode = [&](int threads, std::vector<TokenId>* ids) {
    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      *ids = tok->encode(text, {}, threads);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  std::vector<TokenId> ids1, idsn;
  double t1 = time_encode(1, &ids1);
  double tn = time_encode(all, &idsn);
  if (ids1 != idsn) fail("bench: parallel encoding differs from single-threaded encoding");
  std::string check = "not checked (pass --check-ids FILE)";
  if (!a.check_ids.empty()) {
    if (parse_ids(read_file(a.check_ids)) != ids1) fail("bench: ids differ from {}", a.check_ids);
    check = "identical to " + a.check_ids;
  }
  const double mb = double(text.size()) / 1e6;
  std::string s;
  s += fmt::format("cpu:      {}\n", cpu().summary());
  s += fmt::format("input:    {}, {} bytes, {} tokens ({:.3f} bytes/token)\n", source,
                   with_commas(text.size()), with_commas(ids1.size()),
                   double(text.size()) / double(std::max<size_t>(1, ids1.size())));
  s += fmt::format("1 thread: {:8.2f} MB/s  ({:.1f} ms, best of {})\n", mb / t1, t1 * 1e3, repeat);
  s += fmt::format("{} threads:{:8.2f} MB/s  ({:.1f} ms, best of {}; {:.2f}x)\n", all, mb / tn, tn * 1e3,
                   repeat, t1 / tn);
  s += fmt::format("ids:      {}\n", check);
  nlohmann::json j = {{"bench", "tokenizer"},
                      {"bytes", text.size()},
                      {"tokens", ids1.size()},
                      {"mb_per_s_1t", mb / t1},
                      {"mb_per_s_all", mb / tn},
                      {"threads", all},
                      {"ids_checked", !a.check_ids.empty()},
                      {"cpu", cpu().brand}};
  s += j.dump() + "\n";
  write_stdout(s);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench =
      app.add_subcommand("bench", "Benchmarks (each prints its figures as one JSON object on its last line)");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchTokArgs>();
  CLI::App* t =
      bench->add_subcommand("tokenizer", "Encoding throughput in MB/s, single-threaded and with all threads");
  t->add_option("--input", args->input, "Text file to encode (default: a generated mixed corpus)")
      ->type_name("FILE");
  t->add_option("--bytes", args->bytes, "Size of the generated corpus (default 5,500,000)")->type_name("N");
  t->add_option("--vocab", args->vocab, "Vocabulary directory; default: bundled GPT-2")->type_name("DIR");
  t->add_option("--tokenizer", args->tokenizer, "gpt2 (default), char:DIR or bpe:DIR")->type_name("SPEC");
  t->add_option("--threads", args->threads, "Threads for the parallel run (default: all cores)")
      ->type_name("N")
      ->check(CLI::Range(0, 4096).description(""));
  t->add_option("--repeat", args->repeat, "Timed repetitions; the best is reported (default 5)")
      ->type_name("N")
      ->check(CLI::Range(1, 1000).description(""));
  t->add_option("--write-corpus", args->write_corpus,
                "Save the benchmarked text to FILE (to run a peer on it)")
      ->type_name("FILE");
  t->add_option("--check-ids", args->check_ids,
                "Fail unless the ids equal those in FILE (one per line, e.g. from tiktoken)")
      ->type_name("FILE");
  t->callback([args] { run_bench_tokenizer(*args); });
  add_generate_bench(bench);
  add_model_benches(bench);
  add_packed_bench(bench);
}

}  // namespace gpt::cli
