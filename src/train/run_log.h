// The record of a training run, the same for pretraining and fine-tuning: OUT/metrics.jsonl (one
// JSON object per line: every step, every evaluation), log lines on stdout or a progress bar on a
// terminal, and OUT/loss.svg (the training loss and the validation metric over the steps). Only the
// writing rank of a data-parallel run writes; the others keep quiet. See docs/training-loop.md.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "train/plot.h"

namespace gpt {

struct RunLogOptions {
  std::string out_dir;  // empty: no files
  std::string plot_title;
  std::string train_series = "train", val_series = "val";  // the plot's legend
  std::string bar_label = "train";
  uint64_t total_steps = 0;
  bool quiet = false;  // no stdout
  bool write = true;   // files (false on the ranks other than 0)
};

class RunLog {
 public:
  // Starts OUT/metrics.jsonl. Resuming: with `resume_step` >= 0 it keeps the lines of steps up to
  // that one that an earlier run wrote (a killed run may have logged past its last checkpoint; lines
  // this version did not write, or a torn last line, are dropped) and rebuilds the curves from them.
  explicit RunLog(RunLogOptions o, int64_t resume_step = -1);
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // One line of metrics.jsonl, flushed.
  void metrics(const nlohmann::json& line);
  void train_point(int64_t step, double loss) { train_.push_back({static_cast<double>(step), loss}); }
  void val_point(int64_t step, double value) { val_.push_back({static_cast<double>(step), value}); }
  // After a step: on a terminal the bar with `status`; otherwise `line` at the first step of the
  // run (`first`), every 10th and the last.
  void step(int64_t step, int64_t first, const std::string& status, const std::string& line);
  // A line of its own (the bar, if drawn, ends first).
  void print(const std::string& line);
  void write_plot();
  void fsync();   // metrics.jsonl to disk (before a checkpoint records the step)
  void finish();  // ends the bar; closes metrics.jsonl

 private:
  RunLogOptions o_;
  std::FILE* metrics_ = nullptr;
  std::unique_ptr<Progress> bar_;
  std::vector<CurvePoint> train_, val_;
};

}  // namespace gpt
