// The fine-tuning loop's flags, shared by every `gpt finetune` subcommand (instruct, classify).
#pragma once
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "core/parallel.h"
#include "finetune/loop.h"
#include "finetune/records.h"

namespace gpt::cli {

struct FinetuneFlags {
  FinetuneConfig cfg;
  std::string schedule = "cosine";
  std::optional<float> min_lr;
  std::string train = "all";  // all | last:N | lora
  std::string lora_targets = "c_attn,c_proj,c_fc";
  std::string format = "auto";
  bool skip_bad_lines = false;
  int threads = 0;
};

inline void add_finetune_flags(CLI::App* cmd, FinetuneFlags& f) {
  FinetuneConfig& c = f.cfg;
  c.schedule.lr = 5e-5f;  // fine-tuning rates are far below pretraining's
  c.schedule.warmup = 0;
  c.adam.weight_decay = 0.1f;
  cmd->add_option("--out", c.out_dir, "Output model directory (+ metrics.jsonl, loss.svg)")->required();
  cmd->add_option("--epochs", c.epochs, "Passes over the training examples")->capture_default_str();
  cmd->add_option("--max-steps", c.max_steps, "Optimizer steps (overrides --epochs)");
  cmd->add_option("-b,--batch-size", c.batch_size, "Examples per micro-batch")->capture_default_str();
  cmd->add_option("--grad-accum", c.grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  cmd->add_option("--lr", c.schedule.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", f.min_lr, "Learning rate at the last step (default: lr / 10)");
  cmd->add_option("--warmup", c.schedule.warmup, "Linear warmup steps")->capture_default_str();
  cmd->add_option("--schedule", f.schedule, "Decay after warmup: cosine, linear or constant")
      ->capture_default_str();
  cmd->add_option("--weight-decay", c.adam.weight_decay, "AdamW weight decay (2-D weights only)")
      ->capture_default_str();
  cmd->add_option("--grad-clip", c.grad_clip, "Clip the gradient norm to this (0: off)")
      ->capture_default_str();
  cmd->add_option("--dropout", c.dropout, "Dropout while fine-tuning")->capture_default_str();
  cmd->add_option("--seed", c.seed, "Seed of shuffling, dropout and the LoRA adapters' start")
      ->capture_default_str();
  cmd->add_flag("!--no-shuffle", c.shuffle, "Keep the examples in file order");
  cmd->add_option("--eval-every", c.eval_every, "Evaluate every N steps (and at each epoch end)");
  cmd->add_option("--train", f.train, "What trains: all, last:N (the last N blocks) or lora")
      ->capture_default_str();
  cmd->add_option("--lora-r", c.lora.r, "LoRA rank (with --train lora)")->capture_default_str();
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
  cmd->add_option("--threads", f.threads, "Threads (default: all cores)");
  cmd->add_flag("-q,--quiet", c.quiet, "No progress output");
}

// Applies the flags that need the model (the train selection) and the derived settings.
inline FinetuneConfig resolve_finetune_flags(FinetuneFlags& f, int n_layer) {
  if (f.threads < 0) fail("--threads must not be negative");
  if (f.threads > 0) set_num_threads(f.threads);
  FinetuneConfig c = f.cfg;
  c.schedule.kind = parse_schedule(f.schedule);
  c.schedule.min_lr = f.min_lr ? *f.min_lr : c.schedule.lr / 10.0f;
  c.train = parse_train_selection(f.train, n_layer);
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

inline ReadOptions read_options(const FinetuneFlags& f) {
  ReadOptions o;
  o.format = parse_record_format(f.format);
  o.skip_bad_lines = f.skip_bad_lines;
  return o;
}

}  // namespace gpt::cli
