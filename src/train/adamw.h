// AdamW with decoupled weight decay (Loshchilov & Hutter), as GPT-2/3 training uses it: weight
// decay on matrices and embeddings only, not on biases and LayerNorm gains.
//
// The moments live where the model's parameters and gradients do: in the model's backend memory
// (host memory on the CPU, device memory on a GPU), and the update is Backend::adamw_update on
// GPT::device_params() and GPT::grads(). Reading or writing them from the host goes through
// download_moments / upload_moments (checkpoints).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
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
  // Moments for every parameter of `model`, zeroed, in the model's backend memory.
  AdamW(const GPT& model, AdamWConfig cfg);
  // ZeRO stage 1: moments only for the parameters [shard.begin, shard.end) of the flat array, and
  // step() updates only those (a data-parallel trainer all-gathers the others from their owners).
  AdamW(const GPT& model, AdamWConfig cfg, dist::Range shard);
  // One update of the owned parameters (model.device_params()) from model.grads(), at learning rate
  // `lr` (the schedule's value for this step). Only the model's trainable tensors (GPT::trainable)
  // are updated and weight-decayed: a frozen tensor stays bit for bit as it is. On a device the update is
  // queued on the backend. The caller then tells the backend the parameters changed
  // (Backend::parameters_changed), once they are all in place (after a data-parallel all-gather): a backend
  // with low-precision weight copies would otherwise go on computing with the old weights.
  void step(GPT& model, float lr);
  int64_t steps() const { return t_; }
  // Resuming: the step count sets the bias corrections of the next update.
  void set_steps(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }
  // The moments of the owned parameters, in backend memory: m()[i] belongs to parameter
  // shard().begin + i. Host pointers only when backend().host_memory().
  float* m() { return static_cast<float*>(m_.get()); }
  float* v() { return static_cast<float*>(v_.get()); }
  const float* m() const { return static_cast<const float*>(m_.get()); }
  const float* v() const { return static_cast<const float*>(v_.get()); }
  // Copies of the moments to host memory (size() floats each), and back.
  void download_moments(float* m, float* v) const;
  void upload_moments(const float* m, const float* v);
  size_t size() const { return shard_.size(); }
  dist::Range shard() const { return shard_; }
  size_t num_parameters() const { return total_; }  // of the whole model
  size_t state_bytes() const { return 2 * size() * sizeof(float); }
  Backend& backend() const { return *be_; }

 private:
  AdamWConfig cfg_;
  Backend* be_;
  dist::Range shard_;
  size_t total_ = 0;
  std::vector<dist::Segment> segments_;  // the owned parameters, tensor by tensor
  std::vector<size_t> segment_tensor_;   // the layout() index of each segment's tensor
  BackendBuffer m_, v_;
  int64_t t_ = 0;
};

// AdamW for parameters that live outside a GPT's arena (a task head, LoRA adapters): n fp32
// parameters and their gradients in `backend` memory, the same update as AdamW (Backend::adamw_update).
// `segments` (offsets into the n parameters) say where weight decay applies: each one with its
// own decay flag; parameters in no segment are not updated. Empty: one segment over all n, decayed.
class AdamWBuffer {
 public:
  AdamWBuffer(Backend& backend, size_t n, AdamWConfig cfg, std::vector<dist::Segment> segments = {});
  // params, grads: n floats in backend memory.
  void step(float* params, const float* grads, float lr);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }
  size_t size() const { return n_; }
  float* m() { return static_cast<float*>(m_.get()); }
  float* v() { return static_cast<float*>(v_.get()); }
  const std::vector<dist::Segment>& segments() const { return segments_; }

 private:
  AdamWConfig cfg_;
  Backend* be_;
  size_t n_;
  std::vector<dist::Segment> segments_;
  BackendBuffer m_, v_;
  int64_t t_ = 0;
};

}  // namespace gpt
