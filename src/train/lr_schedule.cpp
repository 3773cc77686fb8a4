#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace gpt {

ScheduleKind parse_schedule(std::string_view name) {
  if (name == "cosine") return ScheduleKind::Cosine;
  if (name == "linear") return ScheduleKind::Linear;
  if (name == "constant") return ScheduleKind::Constant;
  fail("unknown schedule '{}' (use cosine, linear or constant)", name);
}

const char* schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Cosine: return "cosine";
    case ScheduleKind::Linear: return "linear";
    case ScheduleKind::Constant: return "constant";
  }
  return "?";
}

float LrSchedule::at(int step) const {
  const int it = step - 1;
  if (it < warmup) return lr * static_cast<float>(it + 1) / static_cast<float>(warmup);
  const double r = static_cast<double>(it - warmup) / std::max(1, steps - warmup);
  switch (kind) {
    case ScheduleKind::Constant: return lr;
    case ScheduleKind::Linear: return static_cast<float>(lr - (lr - min_lr) * r);
    case ScheduleKind::Cosine:
      return static_cast<float>(min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * r)));
  }
  return lr;
}

}  // namespace gpt
