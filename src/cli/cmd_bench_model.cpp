// gpt bench forward | train-step | gemm: model throughput (tokens/s, achieved GFLOP/s, peak
// memory) and the machine's fp32 GEMM ceiling that those figures are measured against.
#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "core/arena.h"
#include "core/cpu.h"
#include "core/memory.h"
#include "core/parallel.h"
#include "model/gpt.h"
#include "ops/ops.h"
#include "train/step_bench.h"

namespace gpt::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct BenchModelArgs {
  ModelFlags model;
  int batch = 4, seq = 64, steps = 10, warmup = 2, threads = 0;
  std::string device = "cpu";
  int lora_r = 0;         // train-step: LoRA adapters of this rank on c_attn, c_proj, c_fc, base frozen
  int freeze_below = -1;  // train-step: embeddings and blocks below this one frozen
};

void run_bench_model(const BenchModelArgs& a, bool train) {
  if (a.threads > 0) set_num_threads(a.threads);
  const ModelConfig cfg = a.model.resolve("gpt2");
  Backend& be = backend_for(a.device);
  StepBenchOptions o;
  o.batch = a.batch;
  o.seq = a.seq;
  o.steps = std::max(1, a.steps);
  o.warmup = a.warmup;
  o.train = train;
  o.lora_r = a.lora_r;
  o.freeze_below = a.freeze_below;
  const StepBenchResult r = bench_train_step(cfg, be, o);
  const double median = r.median_s, best = r.best_s, flops = r.flops_per_step;
  const double peak_mb = static_cast<double>(peak_rss_bytes()) / 1e6;
  const double tokens_per_s = r.tokens_per_s;
  // MFU against the device's dense bf16 peak; none where the peak is unknown (the CPU: its fp32
  // ceiling is `gpt bench gemm`'s to measure).
  const double peak = be.peak_bf16_flops();
  const double mfu = peak > 0 ? tokens_per_s * cfg.mfu_flops_per_token(a.seq, train) / peak : 0.0;
  const std::string precision = be.act_type() == ActType::BF16 ? "bf16 mixed precision" : "fp32";
  std::string s;
  s += fmt::format("model:     {} ({} parameters), B={} T={}, {}, {}\n", cfg.preset,
                   with_commas(cfg.num_parameters()), a.batch, a.seq,
                   train ? "forward + backward + AdamW" : "forward with loss", precision);
  s += fmt::format("cpu:       {}; {} threads; kernels {}\n", cpu().summary(), num_threads(),
                   ops::kernel_level());
  if (be.name() != "cpu") s += fmt::format("device:    {} ({})\n", be.device_description(), be.name());
  s += fmt::format("step:      {:.1f} ms median, {:.1f} ms best ({} steps after {} warm-up)\n", median * 1e3,
                   best * 1e3, r.timed_steps, a.warmup);
  if (train)
    s += fmt::format(
        "phases:    zero_grad {:.1f} ms, forward {:.1f} ms, backward {:.1f} ms, AdamW {:.1f} ms (means)\n",
        r.phase_s[0] * 1e3, r.phase_s[1] * 1e3, r.phase_s[2] * 1e3, r.phase_s[3] * 1e3);
  if (a.lora_r > 0 || a.freeze_below >= 0)
    s += fmt::format("trainable: {} parameters ({})\n", with_commas(r.trainable_parameters),
                     a.lora_r > 0 ? fmt::format("LoRA r={} on c_attn, c_proj, c_fc; base frozen", a.lora_r)
                                  : fmt::format("blocks {}.. and the head", a.freeze_below));
  s += fmt::format("tokens/s:  {:.0f}\n", tokens_per_s);
  s += fmt::format("GFLOP/s:   {:.1f} ({:.2f} GFLOP per step)\n", flops / median / 1e9, flops / 1e9);
  if (peak > 0)
    s += fmt::format("MFU:       {:.1f}% ({:.0f} TFLOP/s of the {:.0f} TFLOP/s bf16 peak; {} FLOPs/token)\n",
                     mfu * 100, mfu * peak / 1e12, peak / 1e12, train ? "6 N + 12 L T C" : "2 N + 4 L T C");
  s += fmt::format(
      "memory:    peak RSS {:.0f} MB (parameters {:.0f} MB, gradients {:.0f} MB, optimizer {:.0f} MB, "
      "activations {:.0f} MB)\n",
      peak_mb, r.parameter_bytes / 1e6, r.gradient_bytes / 1e6, r.optimizer_bytes / 1e6,
      r.activation_bytes / 1e6);
  nlohmann::json j = {{"bench", train ? "train-step" : "forward"},
                      {"preset", cfg.preset},
                      {"batch", a.batch},
                      {"seq_len", a.seq},
                      {"threads", num_threads()},
                      {"ms_per_step", median * 1e3},
                      {"ms_best", best * 1e3},
                      {"tokens_per_s", tokens_per_s},
                      {"gflops_per_s", flops / median / 1e9},
                      {"gflop_per_step", flops / 1e9},
                      {"peak_rss_mb", peak_mb},
                      {"cpu", cpu().brand},
                      {"device", be.name()},
                      {"mfu", peak > 0 ? nlohmann::json(mfu) : nlohmann::json(nullptr)}};
  s += j.dump() + "\n";
  write_stdout(s);
}

// fp32 GEMM throughput through the same sgemm the model uses: a big square product (the
// machine's ceiling) and the shapes of one GPT-2 training step at the given B*T.
struct BenchGemmArgs {
  int size = 2048, repeat = 5, threads = 0, rows = 256;
};

double time_gemm(int M, int N, int K, bool ta, bool tb, int repeat) {
  std::vector<float> A(static_cast<size_t>(M) * K, 0.5f), B(static_cast<size_t>(K) * N, 0.25f),
      C(static_cast<size_t>(M) * N);
  // ops::linear_* cover (NN, NT, TN); pick through them so the benchmark runs the model's calls.
  auto run = [&] {
    if (!ta && !tb)
      ops::linear_forward(C.data(), A.data(), B.data(), nullptr, M, K, N);
    else if (!ta && tb)  // C[M,N] = A[M,K] @ B[N,K]^T: the LM head's product
      ops::lm_head_forward(C.data(), A.data(), B.data(), M, K, N);
    else  // C[M,N] += A[K,M]^T @ B[K,N]: a weight gradient
      ops::linear_backward(nullptr, C.data(), nullptr, B.data(), A.data(), nullptr, K, M, N);
  };
  run();
  double best = 1e30;
  for (int r = 0; r < repeat; r++) {
    auto t0 = Clock::now();
    run();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

void run_bench_gemm(const BenchGemmArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  const int n = a.size;
  const double t = time_gemm(n, n, n, false, false, a.repeat);
  const double ceiling = 2.0 * n * n * n / t / 1e9;
  std::string s;
  s += fmt::format("cpu:      {}; {} threads\n", cpu().summary(), num_threads());
  s += fmt::format("sgemm ({}) {}x{}x{}: {:.1f} GFLOP/s (best of {})\n", ops::gemm_library(), n, n, n,
                   ceiling, a.repeat);
  // one GPT-2 124M training step at B*T = rows: every matmul at its own shape
  const int R = a.rows, C = 768, V = 50257, L = 12;
  struct Shape {
    const char* what;
    int M, N, K;
    bool ta, tb;
    int count;
  };
  const Shape shapes[] = {
      {"qkv fwd", R, 3 * C, C, false, false, L},   {"attn proj fwd", R, C, C, false, false, L},
      {"fc fwd", R, 4 * C, C, false, false, L},    {"fc proj fwd", R, C, 4 * C, false, false, L},
      {"lm head fwd", R, V, C, false, true, 1},    {"qkv dW", C, 3 * C, R, true, false, L},
      {"attn proj dW", C, C, R, true, false, L},   {"fc dW", C, 4 * C, R, true, false, L},
      {"fc proj dW", 4 * C, C, R, true, false, L}, {"lm head dW", V, C, R, true, false, 1},
      {"qkv dX", R, C, 3 * C, false, true, L},     {"attn proj dX", R, C, C, false, true, L},
      {"fc dX", R, C, 4 * C, false, true, L},      {"fc proj dX", R, 4 * C, C, false, true, L},
      {"lm head dX", R, C, V, false, false, 1},
  };
  double total_t = 0, total_f = 0;
  for (const auto& sh : shapes) {
    const double ts = time_gemm(sh.M, sh.N, sh.K, sh.ta, sh.tb, a.repeat);
    const double f = 2.0 * sh.M * sh.N * sh.K;
    total_t += ts * sh.count;
    total_f += f * sh.count;
    s += fmt::format("  {:<14} {:>6} x {:>6} x {:>6}: {:7.1f} GFLOP/s  x{}\n", sh.what, sh.M, sh.N, sh.K,
                     f / ts / 1e9, sh.count);
  }
  s += fmt::format("GPT-2 step matmuls at B*T={}: {:.1f} ms for {:.1f} GFLOP ({:.1f} GFLOP/s)\n", R,
                   total_t * 1e3, total_f / 1e9, total_f / total_t / 1e9);
  nlohmann::json j = {{"bench", "gemm"},
                      {"library", ops::gemm_library()},
                      {"size", n},
                      {"gflops_per_s", ceiling},
                      {"step_matmul_ms", total_t * 1e3},
                      {"step_matmul_gflops_per_s", total_f / total_t / 1e9},
                      {"threads", num_threads()},
                      {"cpu", cpu().brand}};
  s += j.dump() + "\n";
  write_stdout(s);
}

// Memory read bandwidth: every thread sums its part of a buffer far larger than the caches. It is
// the ceiling of decoding, which streams every weight once per token.
struct BenchMemoryArgs {
  int mb = 1024, repeat = 5, threads = 0;
};

void run_bench_memory(const BenchMemoryArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  const size_t n = static_cast<size_t>(a.mb) * (1 << 20) / sizeof(float);
  FloatArena buf(n);
  const int T = num_threads();
#pragma omp parallel for num_threads(T) schedule(static)
  for (size_t i = 0; i < n; i++) buf.data()[i] = static_cast<float>(i & 255);  // first touch by its reader
  double best = 1e30, sink = 0;
  for (int r = 0; r < a.repeat + 1; r++) {
    auto t0 = Clock::now();
    double total = 0;
#pragma omp parallel for num_threads(T) schedule(static) reduction(+ : total)
    for (int t = 0; t < T; t++) {
      const size_t lo = n * t / T, hi = n * (t + 1) / T;
      const float* p = buf.data();
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (size_t i = lo; i < hi; i++) acc += p[i];
      total += acc;
    }
    if (r > 0) best = std::min(best, seconds_since(t0));  // the first pass warms the pages
    sink += total;
  }
  const double gbs = static_cast<double>(n) * sizeof(float) / best / 1e9;
  std::string s;
  s += fmt::format("cpu:      {}; {} threads\n", cpu().summary(), T);
  s += fmt::format("read:     {:.1f} GB/s over {} MiB (best of {}; checksum {:.0f})\n", gbs, a.mb, a.repeat,
                   sink);
  nlohmann::json j = {
      {"bench", "memory"}, {"read_gb_per_s", gbs}, {"mib", a.mb}, {"threads", T}, {"cpu", cpu().brand}};
  s += j.dump() + "\n";
  write_stdout(s);
}

}  // namespace

void add_model_benches(CLI::App* bench) {
  {
    auto args = std::make_shared<BenchMemoryArgs>();
    CLI::App* c = bench->add_subcommand("memory", "Memory read bandwidth (GB/s): the ceiling of decoding");
    c->add_option("--mib", args->mb, "Buffer size in MiB (default 1024)")
        ->option_text("N")
        ->check(CLI::Range(64, 1 << 20).description(""));
    c->add_option("--repeat", args->repeat, "Timed passes; the best is reported (default 5)")
        ->option_text("N")
        ->check(CLI::Range(1, 1000).description(""));
    c->add_option("--threads", args->threads, "Threads (default: all cores)")
        ->option_text("N")
        ->check(CLI::Range(0, 4096).description(""));
    c->callback([args] { run_bench_memory(*args); });
  }
  for (bool train : {false, true}) {
    auto args = std::make_shared<BenchModelArgs>();
    CLI::App* c = bench->add_subcommand(
        train ? "train-step" : "forward",
        train ? "Training step (forward + backward + AdamW) of a randomly initialised model: tokens/s, "
                "GFLOP/s, memory"
              : "Forward pass with loss of a randomly initialised model: tokens/s, GFLOP/s, memory");
    add_model_flags(c, args->model);
    c->add_option("--batch-size,-b", args->batch, "Sequences per step (default 4)")
        ->option_text("B")
        ->check(CLI::Range(1, 1 << 16).description(""));
    c->add_option("--seq-len,-t", args->seq, "Tokens per sequence (default 64)")
        ->option_text("T")
        ->check(CLI::Range(1, 1 << 20).description(""));
    c->add_option("--steps", args->steps, "Timed steps; the median is reported (default 10)")
        ->option_text("N")
        ->check(CLI::Range(1, 100000).description(""));
    c->add_option("--warmup", args->warmup, "Untimed steps first (default 2)")
        ->option_text("N")
        ->check(CLI::Range(0, 100000).description(""));
    c->add_option("--threads", args->threads, "Threads (default: all cores)")
        ->option_text("N")
        ->check(CLI::Range(0, 4096).description(""));
    c->add_option("--device", args->device,
                  "Where the model runs: cpu (default), cuda, cuda-fp32; with a known bf16 peak the MFU is "
                  "printed")
        ->option_text("DEVICE");
    if (train) {
      c->add_option("--lora-r", args->lora_r,
                    "Train LoRA adapters of rank R (c_attn, c_proj, c_fc) on a frozen base")
          ->option_text("R")
          ->check(CLI::Range(0, 4096).description(""));
      c->add_option("--freeze-below", args->freeze_below, "Freeze the embeddings and the blocks below L")
          ->option_text("L");
    }
    c->callback([args, train] { run_bench_model(*args, train); });
  }
  auto g = std::make_shared<BenchGemmArgs>();
  CLI::App* c =
      bench->add_subcommand("gemm",
                            "The fp32 GEMM ceiling: sgemm at a large square size and at the shapes of "
                            "a GPT-2 training step");
  c->add_option("--size", g->size, "Square size (default 2048)")
      ->option_text("N")
      ->check(CLI::Range(16, 16384).description(""));
  c->add_option("--rows", g->rows, "B*T of the GPT-2 step shapes (default 256)")
      ->option_text("N")
      ->check(CLI::Range(1, 1 << 16).description(""));
  c->add_option("--repeat", g->repeat, "Repetitions; the best is reported (default 5)")
      ->option_text("N")
      ->check(CLI::Range(1, 1000).description(""));
  c->add_option("--threads", g->threads, "Threads (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([g] { run_bench_gemm(*g); });
}

}  // namespace gpt::cli
