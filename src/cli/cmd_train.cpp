// gpt train: causal-LM pretraining (or continued training) on token shards. The loop itself is
// the engine's (train/trainer.h); this file maps flags onto TrainConfig.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/model_flags.h"
#include "core/error.h"
#include "core/parallel.h"
#include "dist/communicator.h"
#include "generate/generator.h"
#include "train/trainer.h"

namespace gpt::cli {
namespace {

struct TrainArgs {
  TrainConfig cfg;
  ModelFlags model;
  std::string schedule = "cosine";
  std::optional<float> min_lr;
  int threads = 0;
};

// The test suite's fault injection (tests/test_cli_*.sh), bound to the engine's hooks:
//   GPT_TEST_KILL_AT_STEP=N    SIGKILL right after optimizer step N (before anything of it is saved)
//   GPT_TEST_POISON_AT_STEP=N  a NaN in the first weight before step N
//   GPT_TEST_FAIL_ON_RANK=R:N  an ordinary error on rank R alone at step N
//   GPT_TEST_STOP_AFTER_STEP=N the run ends after step N without the final save
//   GPT_TEST_KILL_IN_SAVE=N    SIGKILL halfway through the save of step N
TrainHooks test_hooks_from_environment() {
  auto step_of = [](const char* var) -> int64_t {
    const char* e = std::getenv(var);
    return e ? std::atoll(e) : -1;
  };
  TrainHooks h;
  if (const int64_t n = step_of("GPT_TEST_KILL_AT_STEP"); n >= 0)
    h.after_step = [n](int64_t step) {
      if (step == n) ::kill(::getpid(), SIGKILL);
    };
  if (const int64_t n = step_of("GPT_TEST_POISON_AT_STEP"); n >= 0)
    h.poison_before = [n](int64_t step) { return step == n; };
  if (const char* e = std::getenv("GPT_TEST_FAIL_ON_RANK"))
    h.fail_at = [want = std::string(e)](int rank, int64_t step) { return fmt::format("{}:{}", rank, step) == want; };
  if (const int64_t n = step_of("GPT_TEST_STOP_AFTER_STEP"); n >= 0)
    h.stop_after = [n](int64_t step) { return step == n; };
  if (const int64_t n = step_of("GPT_TEST_KILL_IN_SAVE"); n >= 0)
    h.in_save = [n](int64_t step) {
      if (step == n) ::kill(::getpid(), SIGKILL);
    };
  return h;
}

void run_train(TrainArgs& a) {
  if (a.threads < 0) fail("--threads must not be negative");
  if (a.threads > 0) set_num_threads(a.threads);
  TrainConfig& c = a.cfg;
  const ModelFlags& f = a.model;
  const bool shape = !f.preset.empty() || f.n_layer || f.n_head || f.n_embd || f.context || f.vocab_size || f.band ||
                     f.ln || f.attention || f.no_bias || f.untied_head;
  if (!c.init_dir.empty() && shape)
    fail("--init takes the model's shape from its directory: drop --preset and the shape flags");
  if (c.init_dir.empty() && !shape && !c.resume)
    fail("say which model to train: --preset NAME, shape flags (--n-layer, --n-head, --n-embd, --context), or --init DIR");
  if (c.init_dir.empty() && shape) {
    ModelConfig mc = a.model.resolve("gpt2");
    if (!a.model.vocab_size) mc.vocab_size = 0;  // the data's vocabulary
    c.model = mc;
    if (!a.model.dropout) c.dropout = mc.dropout;
  }
  if (a.model.dropout) c.dropout = *a.model.dropout;
  c.schedule.kind = parse_schedule(a.schedule);
  c.schedule.min_lr = a.min_lr ? *a.min_lr : c.schedule.lr / 10.0f;
  c.hooks = test_hooks_from_environment();
  c.sampler = [](GPT& model, const std::shared_ptr<const Tokenizer>& tok, int tokens, uint64_t seed) {
    // From <|endoftext|> (or a newline, or id 0 in a vocabulary with neither), temperature 0.8, top-k 200.
    std::vector<TokenId> prompt;
    if (auto eot = tok->eot_token()) prompt.push_back(*eot);
    else prompt = tok->encode("\n");
    if (prompt.empty()) prompt.push_back(0);
    GenerateSettings s;
    s.max_new_tokens = tokens;
    s.sampling.temperature = 0.8f;
    s.sampling.top_k = 200;
    s.sampling.seed = seed;
    s.stop_at_eot = false;
    s.logprobs = false;
    Generator gen(model, tok);
    return gen.generate(prompt, s).at(0).text;
  };
  try {
    train(c);
  } catch (const dist::CollectiveError&) {
    // Every rank stopped on the same error: rank 0 prints it, the others leave quietly.
    if (dist::world().rank() != 0) std::exit(1);
    throw;
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a GPT on token shards (gpt prepare): AdamW, warmup + decay, clipping, accumulation, checkpoints");
  TrainConfig& c = a->cfg;
  cmd->add_option("--data", c.data_dir, "Dataset directory with train_*.bin (and val_*.bin) shards")->required();
  cmd->add_option("--out", c.out_dir, "Output directory: the model, checkpoints, metrics.jsonl, loss.svg")->required();
  cmd->add_option("--init", c.init_dir, "Start from this model directory (continued pretraining, fine-tuning)");
  add_model_flags(cmd, a->model);
  cmd->add_option("--steps", c.steps, "Total optimizer steps (with --resume: up to this step)")->capture_default_str();
  cmd->add_option("-b,--batch-size", c.batch_size, "Sequences per micro-batch (per rank under mpirun)")
      ->capture_default_str();
  cmd->add_option("-t,--seq-len", c.seq_len, "Tokens per sequence (default: the model's context)");
  cmd->add_option("--grad-accum", c.grad_accum, "Micro-batches accumulated per optimizer step")->capture_default_str();
  cmd->add_option("--lr", c.schedule.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", a->min_lr, "Learning rate at the last step (default: lr / 10)");
  cmd->add_option("--warmup", c.schedule.warmup, "Linear warmup steps")->capture_default_str();
  cmd->add_option("--schedule", a->schedule, "Decay after warmup: cosine, linear or constant")->capture_default_str();
  cmd->add_option("--beta1", c.adam.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", c.adam.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--eps", c.adam.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--weight-decay", c.adam.weight_decay, "AdamW weight decay (2-D weights only)")->capture_default_str();
  cmd->add_option("--grad-clip", c.grad_clip, "Clip the global gradient norm to this (0: off)")->capture_default_str();
  cmd->add_option("--seed", c.seed, "Seed of initialisation, dropout and shuffling")->capture_default_str();
  cmd->add_option(
         "--device", c.device,
         "Where to train: cpu, cuda (bf16 mixed precision), cuda-fp32; cpu-staged runs the CPU through the "
         "device code paths (tests)")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads,
                  "Threads (per rank under mpirun; default: all cores the process may use)");
  cmd->add_flag("--shuffle", c.shuffle, "Random windows (seeded) instead of reading the shards in order");
  cmd->add_option("--eval-every", c.eval_every, "Validation loss every N steps (and at the end)");
  cmd->add_option("--eval-batches", c.eval_batches, "Validation batches per evaluation")->capture_default_str();
  cmd->add_option("--save-every", c.save_every, "Checkpoint every N steps (and at the end)");
  cmd->add_option("--sample-every", c.sample_every, "Print a generated sample every N steps");
  cmd->add_option("--sample-tokens", c.sample_tokens, "Tokens per sample")->capture_default_str();
  cmd->add_flag("--resume", c.resume, "Continue the run saved in --out, bit-exactly, up to --steps");
  cmd->add_flag("-q,--quiet", c.quiet, "No progress output");
  cmd->callback([a] { run_train(*a); });
}

}  // namespace gpt::cli
