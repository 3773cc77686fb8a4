// The fine-tuning loop's flags, shared by every `gpt finetune` subcommand (instruct, classify).
#pragma once
#include <optional>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "core/error.h"
#include "core/parallel.h"
#include "finetune/loop.h"
#include "finetune/records.h"

namespace gpt::cli {

// A command sets its own defaults in here (cfg, min_lr, ...) before add_finetune_flags registers
// the flags, so that help shows them.
struct FinetuneFlags {
  FinetuneConfig cfg;
  std::string schedule = "cosine";
  std::optional<float> min_lr;    // unset: lr / 10
  std::string trainable = "all";  // all | last:N | lora
  std::string lora_targets = "c_attn,c_proj,c_fc";
  std::string format = "auto";
  bool skip_bad_lines = false;
  int threads = 0;
  int max_len = 0;  // 0: the model's context
};

inline void add_finetune_flags(CLI::App* cmd, FinetuneFlags& f) {
  FinetuneConfig& c = f.cfg;
  cmd->add_option("--out,-o", c.out_dir,
                  "Output model directory (+ metrics.jsonl, loss.svg, the task's files)")
      ->option_text("DIR")
      ->required();
  cmd->add_option("--epochs", c.epochs, "Passes over the training examples")->capture_default_str();
  cmd->add_option("--max-steps", c.max_steps, "Optimizer steps (overrides --epochs)");
  cmd->add_option("-b,--batch-size", c.batch_size, "Examples per micro-batch")->capture_default_str();
  cmd->add_option("--grad-accum", c.grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--lr", c.schedule.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", f.min_lr,
                  f.min_lr ? fmt::format("Learning rate at the last step (default {})", *f.min_lr)
                           : std::string("Learning rate at the last step (default: lr / 10)"));
  cmd->add_option("--warmup", c.schedule.warmup, "Linear warmup steps")->capture_default_str();
  cmd->add_option("--schedule", f.schedule, "Decay after warmup: cosine, linear or constant")
      ->capture_default_str();
  cmd->add_option("--weight-decay", c.adam.weight_decay, "AdamW weight decay (2-D weights only)")
      ->capture_default_str();
  cmd->add_option("--grad-clip", c.grad_clip, "Clip the gradient norm to this (0: off)")
      ->capture_default_str();
  cmd->add_option("--dropout", c.dropout, "Dropout while fine-tuning")->capture_default_str();
  cmd->add_option("--seed", c.seed, "Seed of shuffling, dropout and new weights (LoRA adapters, a head)")
      ->capture_default_str();
  cmd->add_flag("!--no-shuffle", c.shuffle, "Keep the examples in file order");
  cmd->add_option("--eval-every", c.eval_every, "Evaluate every N steps (and at each epoch end)");
  cmd->add_option(
         "--trainable", f.trainable,
         "What trains: all, last:N (the last N blocks and ln_f) or lora (adapters on the frozen model)")
      ->capture_default_str();
  cmd->add_option("--lora-r", c.lora.r, "LoRA rank (with --trainable lora)")->capture_default_str();
  cmd->add_option("--lora-alpha", c.lora.alpha, "LoRA alpha: the update is scaled by alpha / r")
      ->capture_default_str();
  cmd->add_option("--lora-dropout", c.lora.dropout, "Dropout on the adapters' input")->capture_default_str();
  cmd->add_option(
         "--lora-targets", f.lora_targets,
         "Projections with adapters (Hugging Face names): c_attn, c_proj, c_fc, attn.c_proj, mlp.c_proj")
      ->capture_default_str();
  cmd->add_option("--format", f.format, "Data format: auto (by extension), jsonl, json, csv, tsv")
      ->capture_default_str();
  cmd->add_flag("--skip-bad-lines", f.skip_bad_lines,
                "Skip malformed lines and records (counted, one warning) instead of rejecting the file");
  cmd->add_option("--max-len", f.max_len, "Tokens per example (default: the context); longer ones are cut");
  cmd->add_option("--threads", f.threads, "Threads (default: all cores)");
  cmd->add_flag("-q,--quiet", c.quiet, "No progress output");
}

// Applies the flags that need the model (the train selection) and the derived settings.
inline FinetuneConfig resolve_finetune_flags(const FinetuneFlags& f, int n_layer) {
  if (f.threads < 0) fail("--threads must not be negative");
  if (f.threads > 0) set_num_threads(f.threads);
  FinetuneConfig c = f.cfg;
  c.schedule.kind = parse_schedule(f.schedule);
  c.schedule.min_lr = f.min_lr ? *f.min_lr : c.schedule.lr / 10.0f;
  c.train = parse_train_selection(f.trainable, n_layer);
  c.lora.targets.clear();
  std::string t = f.lora_targets;
  for (size_t p = 0; p <= t.size();) {
    size_t q = t.find(',', p);
    if (q == std::string::npos) q = t.size();
    if (q > p) c.lora.targets.push_back(t.substr(p, q - p));
    p = q + 1;
  }
  if (c.train.kind == TrainSelection::Lora) {
    if (c.lora.r < 1) fail("--lora-r must be at least 1 (got {})", c.lora.r);
    if (!(c.lora.dropout >= 0 && c.lora.dropout < 1))
      fail("--lora-dropout must be in [0, 1) (got {})", c.lora.dropout);
    lora_target_mask(c.lora.targets);  // an unknown name fails here
  }
  return c;
}

// --max-len against the model's context.
inline int resolve_max_len(const FinetuneFlags& f, int n_ctx) {
  const int max_len = f.max_len > 0 ? f.max_len : n_ctx;
  if (max_len > n_ctx) fail("--max-len {} is longer than the model's context ({})", max_len, n_ctx);
  return max_len;
}

inline ReadOptions read_options(const FinetuneFlags& f) {
  ReadOptions o;
  o.format = parse_record_format(f.format);
  o.skip_bad_lines = f.skip_bad_lines;
  return o;
}

}  // namespace gpt::cli
