// The learning-rate schedule of GPT-2/3-style pretraining: a linear warmup, then a decay from the
// peak rate to a floor over the remaining steps. See docs/training-loop.md.
#pragma once
#include <string_view>

namespace gpt {

enum class ScheduleKind { Cosine, Linear, Constant };
ScheduleKind parse_schedule(std::string_view name);  // "cosine" | "linear" | "constant"
const char* schedule_name(ScheduleKind kind);

struct LrSchedule {
  float lr = 6e-4f;      // peak rate, reached at the end of warmup
  float min_lr = 6e-5f;  // floor at the last step (cosine, linear)
  int warmup = 0;        // steps of linear warmup
  int steps = 1;         // total optimizer steps
  ScheduleKind kind = ScheduleKind::Cosine;

  // The rate of optimizer step `step` (1-based). With it = step - 1: it < warmup gives
  // lr * (it + 1) / warmup; after that r = (it - warmup) / max(1, steps - warmup) runs from 0 towards 1
  // and cosine gives min + (lr - min) * (1 + cos(pi r)) / 2, linear lr - (lr - min) * r.
  float at(int step) const;
};

}  // namespace gpt
