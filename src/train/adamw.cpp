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
  if (shard.size() > 0) {  // a rank may own nothing when there are more ranks than parameters
    m_ = BackendBuffer(*be_, shard.size() * sizeof(float));  // zeroed
    v_ = BackendBuffer(*be_, shard.size() * sizeof(float));
  }
}

void AdamW::step(GPT& model, float lr) {
  if (&model.backend() != be_) fail("AdamW: the model runs on another backend than its optimizer");
  t_++;
  ops::AdamWStep s{lr,
                   cfg_.beta1,
                   cfg_.beta2,
                   cfg_.eps,
                   0.0f,
                   1.0f - std::pow(cfg_.beta1, static_cast<float>(t_)),
                   1.0f - std::pow(cfg_.beta2, static_cast<float>(t_))};
  // device_params(), not params(): a mutable params() would mark the host copy as the newer one.
  float* p = model.device_params();
  const float* g = model.grads();
  // With the whole model as the shard, the segments are the tensors themselves.
  for (const auto& seg : segments_) {
    s.weight_decay = seg.decay ? cfg_.weight_decay : 0.0f;
    const size_t local = seg.offset - shard_.begin;
    be_->adamw_update(p + seg.offset, g + seg.offset, m() + local, v() + local, seg.count, s);
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
