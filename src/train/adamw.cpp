#include "train/adamw.h"

#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace gpt {

AdamW::AdamW(const GPT& model, AdamWConfig cfg) : AdamW(model, cfg, dist::Range{0, model.num_parameters()}) {}

AdamW::AdamW(const GPT& model, AdamWConfig cfg, dist::Range shard)
    : cfg_(cfg), be_(&model.backend()), shard_(shard), total_(model.num_parameters()) {
  if (shard.begin > shard.end || shard.end > total_)
    fail("AdamW: shard [{}, {}) outside the model's {} parameters", shard.begin, shard.end, total_);
  segments_ = dist::shard_segments(model.layout(), shard);
  const auto& layout = model.layout();
  size_t t = 0;
  for (const auto& seg : segments_) {
    while (layout[t].offset + layout[t].numel <= seg.offset) t++;
    segment_tensor_.push_back(t);
  }
  if (shard.size() > 0) {  // a rank may own nothing when there are more ranks than parameters
    m_ = BackendBuffer(*be_, shard.size() * sizeof(float));  // zeroed
    v_ = BackendBuffer(*be_, shard.size() * sizeof(float));
  }
}

// The step's constants; weight_decay is set per segment.
static ops::AdamWStep step_constants(const AdamWConfig& cfg, float lr, int64_t t) {
  return ops::AdamWStep{lr,
                        cfg.beta1,
                        cfg.beta2,
                        cfg.eps,
                        0.0f,
                        1.0f - std::pow(cfg.beta1, static_cast<float>(t)),
                        1.0f - std::pow(cfg.beta2, static_cast<float>(t))};
}

void AdamW::step(GPT& model, float lr) {
  if (&model.backend() != be_) fail("AdamW: the model runs on another backend than its optimizer");
  if (model.layout().size() <= (segment_tensor_.empty() ? 0 : segment_tensor_.back()))
    fail("AdamW: the model is not the one this optimizer was made for");
  t_++;
  ops::AdamWStep s = step_constants(cfg_, lr, t_);
  // device_params(), not params(): a mutable params() would mark the host copy as the newer one.
  float* p = model.device_params();
  const float* g = model.grads();
  // With the whole model as the shard, the segments are the tensors themselves.
  for (size_t k = 0; k < segments_.size(); k++) {
    const dist::Segment& seg = segments_[k];
    if (!model.trainable(segment_tensor_[k])) continue;
    s.weight_decay = seg.decay ? cfg_.weight_decay : 0.0f;
    const size_t local = seg.offset - shard_.begin;
    be_->adamw_update(p + seg.offset, g + seg.offset, m() + local, v() + local, seg.count, s);
  }
}

AdamWBuffer::AdamWBuffer(Backend& backend, size_t n, AdamWConfig cfg, std::vector<dist::Segment> segments)
    : cfg_(cfg), be_(&backend), n_(n), segments_(std::move(segments)) {
  if (segments_.empty()) segments_.push_back({0, n, true});
  for (const auto& s : segments_)
    if (s.offset > n || s.count > n - s.offset)
      fail("AdamWBuffer: segment [{}, {}) outside its {} parameters", s.offset, s.offset + s.count, n);
  if (n > 0) {
    m_ = BackendBuffer(backend, n * sizeof(float));  // zeroed
    v_ = BackendBuffer(backend, n * sizeof(float));
  }
}

void AdamWBuffer::step(float* params, const float* grads, float lr) {
  t_++;
  ops::AdamWStep s = step_constants(cfg_, lr, t_);
  for (const auto& seg : segments_) {
    if (seg.count == 0) continue;
    s.weight_decay = seg.decay ? cfg_.weight_decay : 0.0f;
    be_->adamw_update(params + seg.offset, grads + seg.offset, m() + seg.offset, v() + seg.offset, seg.count,
                      s);
  }
}

void AdamW::download_moments(float* m_host, float* v_host) const {
  if (size() == 0) return;
  be_->to_host(m_host, m(), size() * sizeof(float));
  be_->to_host(v_host, v(), size() * sizeof(float));
}

void AdamW::upload_moments(const float* m_host, const float* v_host) {
  if (size() == 0) return;
  be_->to_device(m(), m_host, size() * sizeof(float));
  be_->to_device(v(), v_host, size() * sizeof(float));
}

}  // namespace gpt
