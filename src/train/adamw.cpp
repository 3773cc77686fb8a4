#include "train/adamw.h"

#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace gpt {

AdamW::AdamW(const GPT& model, AdamWConfig cfg) : AdamW(model, cfg, dist::Range{0, model.num_parameters()}) {}

AdamW::AdamW(const GPT& model, AdamWConfig cfg, dist::Range shard)
    : cfg_(cfg),
      shard_(shard),
      total_(model.num_parameters()),
      segments_(dist::shard_segments(model.layout(), shard)),
      m_(shard.size()),
      v_(shard.size()) {
  if (shard.begin > shard.end || shard.end > total_)
    fail("AdamW: shard [{}, {}) outside the model's {} parameters", shard.begin, shard.end, total_);
}

void AdamW::step(GPT& model, float lr) {
  t_++;
  ops::AdamWStep s{lr,
                   cfg_.beta1,
                   cfg_.beta2,
                   cfg_.eps,
                   0.0f,
                   1.0f - std::pow(cfg_.beta1, static_cast<float>(t_)),
                   1.0f - std::pow(cfg_.beta2, static_cast<float>(t_))};
  float* p = model.params();
  const float* g = model.grads();
  // With the whole model as the shard, the segments are the tensors themselves.
  for (const auto& seg : segments_) {
    s.weight_decay = seg.decay ? cfg_.weight_decay : 0.0f;
    const size_t local = seg.offset - shard_.begin;
    ops::adamw_update(p + seg.offset, g + seg.offset, m_.data() + local, v_.data() + local, seg.count, s);
  }
}

}  // namespace gpt
