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
  cmd->add_option("--seed", c.seed, "Seed of shuffling and dropout")->capture_default_str();
  cmd->add_flag("!--no-shuffle", c.shuffle, "Keep the examples in file order");
  cmd->add_option("--eval-every", c.eval_every, "Evaluate every N steps (and at each epoch end)");
  cmd->add_option("--train", f.train, "What trains: all, last:N (the last N blocks) or lora")
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
  if (f.train == "lora") fail("--train lora is not available in this build yet (it needs the LoRA adapters)");
  c.train = parse_train_selection(f.train, n_layer);
  return c;
}

inline ReadOptions read_options(const FinetuneFlags& f) {
  ReadOptions o;
  o.format = parse_record_format(f.format);
  o.skip_bad_lines = f.skip_bad_lines;
  return o;
}

}  // namespace gpt::cli
