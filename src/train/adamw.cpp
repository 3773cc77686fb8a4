#include "train/adamw.h"

#include <cmath>

#include "ops/ops.h"

namespace gpt {

AdamW::AdamW(const GPT& model, AdamWConfig cfg)
    : cfg_(cfg), m_(model.num_parameters()), v_(model.num_parameters()) {}

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
  for (const auto& info : model.layout()) {
    s.weight_decay = info.decay ? cfg_.weight_decay : 0.0f;
    ops::adamw_update(p + info.offset, g + info.offset, m_.data() + info.offset, v_.data() + info.offset,
                      info.numel, s);
  }
}

}  // namespace gpt
