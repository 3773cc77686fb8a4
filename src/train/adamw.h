// AdamW with decoupled weight decay (Loshchilov & Hutter), as GPT-2/3 training uses it: weight
// decay on matrices and embeddings only, not on biases and LayerNorm gains.
#pragma once
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "dist/shard.h"
#include "model/gpt.h"

namespace gpt {

struct AdamWConfig {
  float lr = 6e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
};

class AdamW {
 public:
  // Moments for every parameter of `model`.
  AdamW(const GPT& model, AdamWConfig cfg);
  // ZeRO stage 1: moments only for the parameters [shard.begin, shard.end) of the flat array, and
  // step() updates only those (a data-parallel trainer all-gathers the others from their owners).
  AdamW(const GPT& model, AdamWConfig cfg, dist::Range shard);
  // One update of the owned parameters from model.grads(), at learning rate `lr` (the schedule's
  // value for this step). Moments are allocated at construction.
  void step(GPT& model, float lr);
  int64_t steps() const { return t_; }
  // Resuming: the step count sets the bias corrections of the next update.
  void set_steps(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }
  // The moments of the owned parameters: m()[i] belongs to parameter shard().begin + i.
  float* m() { return m_.data(); }
  float* v() { return v_.data(); }
  const float* m() const { return m_.data(); }
  const float* v() const { return v_.data(); }
  size_t size() const { return m_.size(); }
  dist::Range shard() const { return shard_; }
  size_t num_parameters() const { return total_; }  // of the whole model
  size_t state_bytes() const { return m_.bytes() + v_.bytes(); }

 private:
  AdamWConfig cfg_;
  dist::Range shard_;
  size_t total_ = 0;
  std::vector<dist::Segment> segments_;  // the owned parameters, tensor by tensor
  FloatArena m_, v_;
  int64_t t_ = 0;
};

}  // namespace gpt
