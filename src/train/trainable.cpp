#include "train/trainable.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace gpt {

TrainSelection parse_train_selection(std::string_view spec, int n_layer) {
  if (spec == "all") return {TrainSelection::All, n_layer};
  if (spec.substr(0, 5) == "last:") {
    std::string num(spec.substr(5));
    char* end = nullptr;
    long n = std::strtol(num.c_str(), &end, 10);
    if (num.empty() || *end != '\0' || n < 0 || n > n_layer)
      fail("--trainable last:N needs N between 0 and the model's {} layers (got \"{}\")", n_layer, spec);
    return {TrainSelection::LastN, static_cast<int>(n)};
  }
  if (spec == "lora") return {TrainSelection::Lora, 0};
  fail("--trainable must be all, last:N or lora (got \"{}\")", spec);
}

Trainable Trainable::where(const GPT& model, const std::function<bool(const ParamInfo&)>& pick) {
  Trainable t;
  t.layout_ = model.layout();
  t.n_layer_ = model.config().n_layer;
  t.mask_.resize(t.layout_.size());
  bool all = true;
  for (size_t i = 0; i < t.layout_.size(); i++) {
    t.mask_[i] = pick(t.layout_[i]) ? 1 : 0;
    all &= t.mask_[i] != 0;
  }
  if (!all)
    for (size_t i = 0; i < t.layout_.size(); i++)
      if (tensor_layer(t.layout_[i], t.n_layer_) < 0) t.mask_[i] = 0;
  return t;
}

Trainable Trainable::all(const GPT& model) {
  return where(model, [](const ParamInfo&) { return true; });
}

Trainable Trainable::none(const GPT& model) {
  return where(model, [](const ParamInfo&) { return false; });
}

Trainable Trainable::from_layer(const GPT& model, int layer) {
  const int L = model.config().n_layer;
  if (layer < 0 || layer > L) fail("the trainable blocks must start in 0..{} (got {})", L, layer);
  return where(model, [&](const ParamInfo& p) { return tensor_layer(p, L) >= layer; });
}

Trainable Trainable::select(const GPT& model, TrainSelection sel) {
  switch (sel.kind) {
    case TrainSelection::All:
      return all(model);
    case TrainSelection::LastN:
      return from_layer(model, model.config().n_layer - sel.n);
    case TrainSelection::Lora:
    case TrainSelection::None:
      break;
  }
  return none(model);
}

bool Trainable::contains(std::string_view name) const {
  for (size_t i = 0; i < layout_.size(); i++)
    if (layout_[i].name == name) return mask_[i] != 0;
  fail("the model has no parameter \"{}\"", name);
}

bool Trainable::all() const {
  return std::all_of(mask_.begin(), mask_.end(), [](char c) { return c != 0; });
}

size_t Trainable::num_parameters() const {
  size_t n = 0;
  for (size_t i = 0; i < layout_.size(); i++) n += mask_[i] ? layout_[i].numel : 0;
  return n;
}

dist::Range Trainable::span() const {
  size_t lo = SIZE_MAX, hi = 0;
  for (size_t i = 0; i < layout_.size(); i++)
    if (mask_[i]) {
      lo = std::min(lo, layout_[i].offset);
      hi = std::max(hi, layout_[i].offset + layout_[i].numel);
    }
  return lo < hi ? dist::Range{lo, hi} : dist::Range{0, 0};
}

std::vector<dist::Segment> Trainable::segments(dist::Range shard) const {
  std::vector<ParamInfo> live;
  for (size_t i = 0; i < layout_.size(); i++)
    if (mask_[i]) live.push_back(layout_[i]);
  return dist::shard_segments(live, shard);
}

void Trainable::apply(GPT& model) const {
  if (model.layout().size() != layout_.size()) fail("Trainable: made for another model");
  model.set_requires_grad(mask_);
}

}  // namespace gpt
