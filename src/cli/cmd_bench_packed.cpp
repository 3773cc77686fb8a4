// gpt bench packed: one packed_linear product (f32, bf16 or q8 weights) at a given shape: ms per
// call, weight bytes streamed per second (the decode figure) and GFLOP/s (the prefill figure).
#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "ops/packed.h"

namespace gpt::cli {
namespace {

struct BenchPackedArgs {
  std::string type = "f32";
  int n = 1, in = 768, out = 2304, repeat = 5, threads = 0;
  bool hot = false;
  double cold_mb = 128;
};

using Clock = std::chrono::steady_clock;

void run_bench_packed(const BenchPackedArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  const ops::WeightType type = ops::parse_weight_type(a.type);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(a.out) * a.in), x(static_cast<size_t>(a.n) * a.in), bias(a.out),
      y(static_cast<size_t>(a.n) * a.out);
  for (auto& v : w) v = normal(rng);
  for (auto& v : x) v = normal(rng) * 50.0f;
  for (auto& v : bias) v = normal(rng);
  // Decode reads every weight from memory, not cache: unless --hot, the calls cycle through
  // enough copies of the matrix to overflow the last-level cache.
  std::vector<ops::PackedMatrix> copies;
  copies.push_back(ops::PackedMatrix::from_rows(w.data(), a.out, a.in, type));
  const size_t wbytes = copies[0].bytes();
  const size_t ncopies =
      a.hot ? 1
            : std::clamp<size_t>(static_cast<size_t>(a.cold_mb * 1e6 / static_cast<double>(wbytes)) + 1, 1,
                                 512);
  while (copies.size() < ncopies) copies.push_back(ops::PackedMatrix::from_rows(w.data(), a.out, a.in, type));
  w.clear();
  w.shrink_to_fit();

  auto round = [&] {
    auto t0 = Clock::now();
    for (const auto& m : copies) ops::packed_linear(y.data(), x.data(), m, bias.data(), a.n);
    return std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(copies.size());
  };
  round();  // warm-up: pages touched, scratch sized
  std::vector<double> times;
  for (int r = 0; r < a.repeat; r++) times.push_back(round());
  std::sort(times.begin(), times.end());
  const double best = times.front(), median = times[times.size() / 2];
  const double gbs = static_cast<double>(wbytes) / best / 1e9;
  const double gflops = 2.0 * a.n * a.in * a.out / best / 1e9;
  std::string s;
  s += fmt::format("cpu:      {}; {} threads; packed kernels {}\n", cpu().summary(), num_threads(),
                   ops::packed_kernel_level());
  s += fmt::format("shape:    y[{}, {}] = x[{}, {}] @ W^T + b, W {} ({:.2f} MB), {} copies ({})\n", a.n,
                   a.out, a.n, a.in, a.type, wbytes / 1e6, copies.size(),
                   a.hot ? "hot: in cache" : "cold: from memory");
  s += fmt::format("time:     {:.4f} ms best, {:.4f} ms median ({} rounds)\n", best * 1e3, median * 1e3,
                   a.repeat);
  s += fmt::format("weights:  {:.1f} GB/s\n", gbs);
  s += fmt::format("compute:  {:.1f} GFLOP/s\n", gflops);
  nlohmann::json j = {{"bench", "packed"}, {"type", a.type},         {"n", a.n},
                      {"in", a.in},        {"out", a.out},           {"threads", num_threads()},
                      {"hot", a.hot},      {"ms", best * 1e3},       {"ms_median", median * 1e3},
                      {"gb_per_s", gbs},   {"gflops_per_s", gflops}, {"kernels", ops::packed_kernel_level()},
                      {"cpu", cpu().brand}};
  s += j.dump() + "\n";
  write_stdout(s);
}

}  // namespace

void add_packed_bench(CLI::App* bench) {
  auto a = std::make_shared<BenchPackedArgs>();
  CLI::App* c = bench->add_subcommand(
      "packed", "One packed_linear product with f32, bf16 or q8 weights: ms, weight GB/s, GFLOP/s");
  c->add_option("--type", a->type, "f32 (default), bf16 or q8")->option_text("TYPE");
  c->add_option("--n", a->n, "Rows of x: 1 for a decode step, 512 for a prefill (default 1)")
      ->option_text("N")
      ->check(CLI::Range(1, 1 << 16).description(""));
  c->add_option("--in", a->in, "Inputs (default 768)")
      ->option_text("IN")
      ->check(CLI::Range(1, 1 << 20).description(""));
  c->add_option("--out", a->out, "Outputs (default 2304)")
      ->option_text("OUT")
      ->check(CLI::Range(1, 1 << 20).description(""));
  c->add_option("--repeat", a->repeat, "Timed rounds; the best is reported (default 5)")
      ->option_text("N")
      ->check(CLI::Range(1, 1000).description(""));
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->add_flag("--hot", a->hot, "Reuse one matrix (cache-resident) instead of cycling through copies");
  c->add_option("--cold-mb", a->cold_mb, "Total size of the copies cycled through (default 128)")
      ->option_text("MB")
      ->check(CLI::Range(0.0, 65536.0).description(""));
  c->callback([a] { run_bench_packed(*a); });
}

}  // namespace gpt::cli
