// AdamW with decoupled weight decay (Loshchilov & Hutter), as GPT-2/3 training uses it: weight
// decay on matrices and embeddings only, not on biases and LayerNorm gains.
//
// One optimizer over parameter groups, like PyTorch's: the model's trainable tensors (or this
// rank's shard of them, ZeRO-1), a task's head, LoRA adapters. Each group is n parameters and their
// gradients in the optimizer's backend memory (host memory on the CPU, device memory on a GPU),
// with the segments that train and their decay flags; the moments live beside them, and the update
// is Backend::adamw_update. Checkpoints read and write the model group's moments
// (download_moments / upload_moments).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "dist/shard.h"
#include "model/gpt.h"
#include "train/trainable.h"

namespace gpt {

struct AdamWConfig {
  float lr = 6e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
};

// n parameters and their gradients in backend memory. `segments` (offsets into the n) are what the
// optimizer updates, each decayed or not; parameters in no segment stay as they are. Empty: one
// segment over all n, decayed.
struct ParamGroup {
  std::string name;  // "model", "classifier", "lora", ...
  float* params = nullptr;
  float* grads = nullptr;
  size_t n = 0;
  std::vector<dist::Segment> segments;
};

class AdamW {
 public:
  // No groups yet (add_group).
  AdamW(Backend& backend, AdamWConfig cfg);
  // The model's group: the tensors of `trainable` inside `shard` of the flat parameter array (ZeRO
  // stage 1: a data-parallel trainer updates its shard and all-gathers the others from their
  // owners). Moments are kept for the whole shard, whatever trains, so a checkpoint's layout does
  // not depend on the choice. Without `trainable`: every tensor; without `shard`: all of them.
  AdamW(GPT& model, AdamWConfig cfg);
  AdamW(GPT& model, AdamWConfig cfg, dist::Range shard);
  AdamW(GPT& model, AdamWConfig cfg, const Trainable& trainable, dist::Range shard);
  AdamW(GPT& model, AdamWConfig cfg, const Trainable& trainable);
  // Another group, its moments zeroed. Returns its index.
  size_t add_group(ParamGroup g);

  // One update of every group's segments at learning rate `lr` (the schedule's value for this step).
  // On a device the update is queued on the backend. The caller then tells the backend that the
  // model's parameters changed (Backend::parameters_changed), once they are all in place (after a
  // data-parallel all-gather): a backend with low-precision weight copies would otherwise go on
  // computing with the old weights.
  // `grad_scale` (clipping's factor) multiplies each gradient as the update reads it: the same
  // numbers as scaling the gradients first, without a pass over them.
  void step(float lr, float grad_scale = 1.0f);
  // The sum of the squares of every group's gradients (accumulated in double on the backend).
  double grad_sum_squares() const;
  void zero_grads();  // every group's gradients but the model's (GPT::zero_grad does those)

  int64_t steps() const { return t_; }
  // Resuming: the step count sets the bias corrections of the next update.
  void set_steps(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }
  Backend& backend() const { return *be_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  size_t num_trainable() const;                 // parameters in segments, over every group
  size_t state_bytes() const;                   // the moments of every group

  // ---- the model group (checkpoints) ----
  bool has_model() const { return model_ >= 0; }
  bool model_trains() const { return model_ >= 0 && !groups_[static_cast<size_t>(model_)].segments.empty(); }
  // The moments of the model group: m()[i] belongs to parameter shard().begin + i. Host pointers
  // only when backend().host_memory().
  float* m() { return model_moments(m_); }
  float* v() { return model_moments(v_); }
  const float* m() const { return const_cast<AdamW*>(this)->m(); }
  const float* v() const { return const_cast<AdamW*>(this)->v(); }
  // Copies of the model group's moments to host memory (size() floats each), and back.
  void download_moments(float* m, float* v) const;
  void upload_moments(const float* m, const float* v);
  size_t size() const { return shard_.size(); }
  dist::Range shard() const { return shard_; }
  size_t num_parameters() const { return total_; }  // of the whole model

 private:
  float* model_moments(std::vector<BackendBuffer>& b);
  AdamWConfig cfg_;
  Backend* be_;
  std::vector<ParamGroup> groups_;
  std::vector<BackendBuffer> m_, v_;  // per group
  int model_ = -1;                    // the model group's index
  dist::Range shard_;
  size_t total_ = 0;
  int64_t t_ = 0;
};

}  // namespace gpt
