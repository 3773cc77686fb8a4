#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace gpt {

AdamW::AdamW(Backend& backend, AdamWConfig cfg) : cfg_(cfg), be_(&backend) {}

AdamW::AdamW(GPT& model, AdamWConfig cfg) : AdamW(model, cfg, Trainable::all(model)) {}

AdamW::AdamW(GPT& model, AdamWConfig cfg, dist::Range shard) : AdamW(model, cfg, Trainable::all(model), shard) {}

AdamW::AdamW(GPT& model, AdamWConfig cfg, const Trainable& trainable)
    : AdamW(model, cfg, trainable, dist::Range{0, model.num_parameters()}) {}

AdamW::AdamW(GPT& model, AdamWConfig cfg, const Trainable& trainable, dist::Range shard)
    : cfg_(cfg), be_(&model.backend()), shard_(shard), total_(model.num_parameters()) {
  if (shard.begin > shard.end || shard.end > total_)
    fail("AdamW: shard [{}, {}) outside the model's {} parameters", shard.begin, shard.end, total_);
  ParamGroup g{"model", model.device_params() + shard.begin, nullptr, shard.size(), {}};
  for (dist::Segment s : trainable.segments(shard)) {
    s.offset -= shard.begin;
    g.segments.push_back(s);
  }
  // A model with nothing trainable here (LoRA alone) needs neither gradients nor moments.
  if (!g.segments.empty()) g.grads = model.grads() + shard.begin;
  model_ = static_cast<int>(groups_.size());
  groups_.push_back(std::move(g));
  const bool any = !groups_.back().segments.empty();
  // A rank may own nothing when there are more ranks than parameters.
  m_.emplace_back(any && shard.size() ? BackendBuffer(*be_, shard.size() * sizeof(float)) : BackendBuffer());
  v_.emplace_back(any && shard.size() ? BackendBuffer(*be_, shard.size() * sizeof(float)) : BackendBuffer());
}

size_t AdamW::add_group(ParamGroup g) {
  if (g.segments.empty()) g.segments.push_back({0, g.n, true});
  for (const auto& s : g.segments)
    if (s.offset > g.n || s.count > g.n - s.offset)
      fail("AdamW: group {}: segment [{}, {}) outside its {} parameters", g.name, s.offset, s.offset + s.count,
           g.n);
  m_.emplace_back(g.n ? BackendBuffer(*be_, g.n * sizeof(float)) : BackendBuffer());  // zeroed
  v_.emplace_back(g.n ? BackendBuffer(*be_, g.n * sizeof(float)) : BackendBuffer());
  groups_.push_back(std::move(g));
  return groups_.size() - 1;
}

float* AdamW::model_moments(std::vector<BackendBuffer>& b) {
  return model_ < 0 ? nullptr : static_cast<float*>(b[static_cast<size_t>(model_)].get());
}

// The part of a group that trains: from its first segment's start to its last one's end.
static dist::Range extent(const ParamGroup& g) {
  if (g.segments.empty()) return {0, 0};
  return {g.segments.front().offset, g.segments.back().offset + g.segments.back().count};
}

void AdamW::step(float lr, float grad_scale) {
  t_++;
  ops::AdamWStep s{lr,
                   cfg_.beta1,
                   cfg_.beta2,
                   cfg_.eps,
                   0.0f,  // per segment
                   1.0f - std::pow(cfg_.beta1, static_cast<float>(t_)),
                   1.0f - std::pow(cfg_.beta2, static_cast<float>(t_)),
                   grad_scale};
  for (size_t k = 0; k < groups_.size(); k++) {
    const ParamGroup& g = groups_[k];
    float* m = static_cast<float*>(m_[k].get());
    float* v = static_cast<float*>(v_[k].get());
    for (const dist::Segment& seg : g.segments) {
      if (seg.count == 0) continue;
      s.weight_decay = seg.decay ? cfg_.weight_decay : 0.0f;
      be_->adamw_update(g.params + seg.offset, g.grads + seg.offset, m + seg.offset, v + seg.offset, seg.count,
                        s);
    }
  }
}

double AdamW::grad_sum_squares() const {
  double sq = 0.0;
  for (const ParamGroup& g : groups_) {
    const dist::Range r = extent(g);
    if (r.size()) sq += be_->sum_squares(g.grads + r.begin, r.size());
  }
  return sq;
}

void AdamW::zero_grads() {
  for (size_t k = 0; k < groups_.size(); k++)
    if (static_cast<int>(k) != model_ && groups_[k].n) be_->fill_zero(groups_[k].grads, groups_[k].n * sizeof(float));
}

size_t AdamW::num_trainable() const {
  size_t n = 0;
  for (const ParamGroup& g : groups_)
    for (const dist::Segment& s : g.segments) n += s.count;
  return n;
}

size_t AdamW::state_bytes() const {
  size_t b = 0;
  for (size_t k = 0; k < groups_.size(); k++) b += m_[k].bytes() + v_[k].bytes();
  return b;
}

void AdamW::download_moments(float* m_host, float* v_host) const {
  if (size() == 0 || !m()) return;
  be_->to_host(m_host, m(), size() * sizeof(float));
  be_->to_host(v_host, v(), size() * sizeof(float));
}

void AdamW::upload_moments(const float* m_host, const float* v_host) {
  if (size() == 0 || !m()) return;
  be_->to_device(m(), m_host, size() * sizeof(float));
  be_->to_device(v(), v_host, size() * sizeof(float));
}

}  // namespace gpt
