// gpt bench generate: prefill and decode throughput of the KV-cache decoder on a randomly
// initialised model, in the shape llama.cpp's llama-bench reports (pp = prompt processing with the
// logits of the last position only, tg = token generation one token per step), on any --device,
// decoding at batch 1 and (when --batch > 1) at --batch, each step's logits on the host as
// generation uses them.
#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "core/cpu.h"
#include "core/memory.h"
#include "core/parallel.h"
#include "generate/decoder.h"
#include "generate/sampling.h"
#include "ops/ops.h"

namespace gpt::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct BenchGenerateArgs {
  ModelFlags model;
  int prompt_tokens = 512, new_tokens = 128, batch = 1, repeat = 3, threads = 0;
  std::string weights = "f32", device = "cpu";
};

// N greedy steps of the given rows: the median seconds per step and the total.
std::pair<double, double> decode_steps(Decoder& dec, std::span<const int> rows, int N) {
  std::vector<TokenId> next(rows.size());
  std::vector<double> step_s;
  const auto t0 = Clock::now();
  for (int k = 0; k < N; k++) {
    const auto ts = Clock::now();
    for (size_t i = 0; i < rows.size(); i++)
      next[i] = greedy_pick(std::span<const float>(dec.logits(rows[i]), dec.vocab()));
    dec.step(rows, next);
    step_s.push_back(seconds_since(ts));
  }
  const double total = seconds_since(t0);
  std::sort(step_s.begin(), step_s.end());
  return {step_s.empty() ? 0.0 : step_s[step_s.size() / 2], total};
}

void run_bench_generate(const BenchGenerateArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  const ops::WeightType type = ops::parse_weight_type(a.weights);
  ModelConfig cfg = a.model.resolve("gpt2");
  if (a.prompt_tokens + a.new_tokens > cfg.n_ctx)
    fail(
        "--prompt-tokens {} + --new-tokens {} exceed the context of {}: the bench measures a cache that "
        "never slides",
        a.prompt_tokens, a.new_tokens, cfg.n_ctx);
  Backend& be = backend_for(a.device);
  // The model as generation loads it: packed in --weights where the backend has the kernels, its
  // own fp32 weights elsewhere.
  const bool packs = be.kind() == DeviceKind::Cpu || be.kind() == DeviceKind::CpuStaged;
  if (!packs && type != ops::WeightType::F32)
    fail("--weights {} runs on the cpu backend only, not on {} (use f32 weights there)", a.weights, a.device);
  GPT model(cfg, be);
  model.init_gpt2(1);
  if (packs) model.pack(type);  // the fp32 weights go once packed
  const int B = a.batch, P = a.prompt_tokens, N = a.new_tokens, V = cfg.vocab_size;
  Decoder dec(model, B);
  std::mt19937 rng(7);
  std::vector<std::vector<TokenId>> prompts(B, std::vector<TokenId>(P));
  for (auto& p : prompts)
    for (auto& t : p) t = rng() % V;
  std::vector<int> rows(B);
  for (int b = 0; b < B; b++) rows[b] = b;

  // Warm-up: fault in the weights and the caches, a device's first launches and plans.
  dec.prefill(0, std::span<const TokenId>(prompts[0].data(), std::min(P, 64)));
  decode_steps(dec, std::span<const int>(rows.data(), 1), 2);
  // Prefill: each row's prompt, logits of its last position only; the best of `repeat` runs.
  double prefill_s = 1e30;
  for (int r = 0; r < std::max(1, a.repeat); r++) {
    const auto t0 = Clock::now();
    for (int b = 0; b < B; b++) dec.prefill(b, prompts[b]);
    prefill_s = std::min(prefill_s, seconds_since(t0));
  }
  // Decode: N steps of one token per row (greedy argmax), the cache growing from P to P + N; at
  // batch 1, then (when --batch > 1) at batch B.
  dec.prefill(0, prompts[0]);
  const auto [step1, total1] = decode_steps(dec, std::span<const int>(rows.data(), 1), N);
  std::pair<double, double> batched{step1, total1};
  if (B > 1) {
    for (int b = 0; b < B; b++) dec.prefill(b, prompts[b]);
    batched = decode_steps(dec, rows, N);
  }
  const auto [median_step, decode_s] = batched;

  const double prefill_tps = static_cast<double>(B) * P / prefill_s;
  const double decode_tps = N > 0 ? static_cast<double>(B) * N / decode_s : 0;
  const double tps1 = N > 0 ? N / total1 : 0;
  const double peak_mb = static_cast<double>(peak_rss_bytes()) / 1e6;
  const double weight_bytes = static_cast<double>(model.weight_bytes());
  // What one decode step must read from memory: every weight once (all but the position table, of
  // which it reads one row), and each row's cached keys and values at the mean context length.
  const double kv_elem = static_cast<double>(kv_size(dec.cache_type()));
  const double step_bytes = weight_bytes - 4.0 * cfg.n_ctx * cfg.n_embd +
                            static_cast<double>(B) * cfg.n_layer * 2.0 * (P + N / 2.0) * cfg.n_embd * kv_elem;
  const double decode_gbs = median_step > 0 ? step_bytes / median_step / 1e9 : 0;
  const std::string weights = packs ? ops::weight_type_name(type)
                                    : (be.act_type() == ActType::BF16 ? "f32 masters, bf16 products" : "f32");
  std::string s;
  s += fmt::format("model:    {} ({} parameters), {} weights ({:.0f} MB), random init\n", cfg.preset,
                   with_commas(cfg.num_parameters()), weights, weight_bytes / 1e6);
  if (be.kind() != DeviceKind::Cpu) s += fmt::format("device:   {} ({})\n", be.device_description(), be.name());
  s += fmt::format("cpu:      {}; {} threads; kernels {}, packed {}\n", cpu().summary(), num_threads(),
                   ops::kernel_level(), ops::packed_kernel_level());
  s +=
      fmt::format("prefill:  {} x {} tokens, last-position logits: {:.1f} ms, {:.1f} tokens/s (best of {})\n",
                  B, P, prefill_s * 1e3, prefill_tps, std::max(1, a.repeat));
  if (B > 1)
    s += fmt::format("          batch 1: {} tokens (context {} -> {}): {:.2f} ms/step median, {:.1f} tokens/s\n",
                     N, P, P + N, step1 * 1e3, tps1);
  s += fmt::format("decode:   {} x {} tokens (context {} -> {}): {:.2f} ms/step median, {:.1f} tokens/s\n", B,
                   N, P, P + N, median_step * 1e3, decode_tps);
  s += fmt::format(
      "          a step reads {:.0f} MB (weights + mean KV cache): {:.1f} GB/s (compare: gpt bench memory)\n",
      step_bytes / 1e6, decode_gbs);
  s += fmt::format(
      "memory:   peak RSS {:.0f} MB (weights {:.0f} MB, KV cache {:.0f} MB, activations {:.0f} MB)\n",
      peak_mb, weight_bytes / 1e6, dec.cache_bytes() / 1e6, dec.activation_bytes() / 1e6);
  nlohmann::json j = {{"bench", "generate"},
                      {"device", std::string(be.name())},
                      {"device_description", be.device_description()},
                      {"preset", cfg.preset},
                      {"weights", weights},
                      {"batch", B},
                      {"prompt_tokens", P},
                      {"new_tokens", N},
                      {"threads", num_threads()},
                      {"prefill_tokens_per_s", prefill_tps},
                      {"decode_tokens_per_s", decode_tps},
                      {"decode_tokens_per_s_batch1", tps1},
                      {"prefill_ms", prefill_s * 1e3},
                      {"decode_ms_per_step", median_step * 1e3},
                      {"decode_ms_per_step_batch1", step1 * 1e3},
                      {"decode_mb_per_step", step_bytes / 1e6},
                      {"decode_gb_per_s", decode_gbs},
                      {"weight_mb", weight_bytes / 1e6},
                      {"kv_cache_mb", dec.cache_bytes() / 1e6},
                      {"peak_rss_mb", peak_mb},
                      {"cpu", cpu().brand},
                      {"kernels", ops::packed_kernel_level()}};
  s += j.dump() + "\n";
  write_stdout(s);
}

}  // namespace

void add_generate_bench(CLI::App* bench) {
  auto a = std::make_shared<BenchGenerateArgs>();
  CLI::App* c = bench->add_subcommand(
      "generate",
      "Prefill and decode throughput (tokens/s) of the KV-cache decoder on a randomly initialised model");
  add_model_flags(c, a->model);
  c->add_option("--prompt-tokens", a->prompt_tokens, "Prompt length (default 512)")
      ->option_text("N")
      ->check(CLI::Range(1, 1 << 20).description(""));
  c->add_option("--new-tokens", a->new_tokens, "Tokens decoded per row (default 128)")
      ->option_text("N")
      ->check(CLI::Range(0, 1 << 20).description(""));
  c->add_option("--batch,-b", a->batch, "Rows decoded together (default 1)")
      ->option_text("B")
      ->check(CLI::Range(1, 4096).description(""));
  c->add_option("--weights", a->weights, "f32 (default), bf16 or q8")->option_text("TYPE");
  c->add_option("--device", a->device,
                "cpu (default), cuda, cuda-fp32 or cpu-staged (tests)")
      ->option_text("DEV");
  c->add_option("--repeat", a->repeat, "Prefill runs; the best is reported (default 3)")
      ->option_text("N")
      ->check(CLI::Range(1, 1000).description(""));
  c->add_option("--threads", a->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a] { run_bench_generate(*a); });
}

}  // namespace gpt::cli
