// The GPT network: one transformer, written once, forward beside backward, against a Backend
// (backend/backend.h: the CPU, or CUDA). Training, evaluation, a prefill and a one-token decode step
// all run the same blocks; a key/value cache (model/kv_cache.h) is an option of the forward, not a
// second model. Reads top to bottom like the architecture diagram in docs/architecture.md.
//
// Weights. A model is in one of two storages:
//   training: every tensor fp32 in one parameter arena (host memory, mirrored in backend memory on
//             a device), with gradients: it can train;
//   packed:   the weight matrices held by the backend in an inference format (f32, bf16 or q8:
//             ops/packed.h, Backend::adopt_weight), the rest fp32: it runs every forward (training's
//             included, for evaluation) but cannot train. pack() turns the first into the second;
//             io/model_dir.h loads a bf16 or q8 directory straight into it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "model/config.h"
#include "model/params.h"
#include "ops/packed.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// A target id that is not scored (prompt tokens in fine-tuning, padding).
inline constexpr int32_t kIgnoreIndex = -1;

// Pointers to one layer's tensors, in the parameter arena or the gradient arena (same layout).
// A tensor the config drops (biases with bias=false), or a matrix of a packed model, is nullptr.
struct LayerTensors {
  float *ln1_w, *ln1_b;              // [C]
  float *qkv_w, *qkv_b;              // [C, 3C], [3C]
  float *attn_proj_w, *attn_proj_b;  // [C, C], [C]
  float *ln2_w, *ln2_b;              // [C]
  float *fc_w, *fc_b;                // [C, 4C], [4C]
  float *fc_proj_w, *fc_proj_b;      // [4C, C], [C]
};
struct ModelTensors {
  float* wte;  // [V, C] token embedding (and the LM head when tied)
  float* wpe;  // [n_ctx, C] position embedding
  std::vector<LayerTensors> layers;
  float *lnf_w, *lnf_b;  // [C], pre-LN only
  float* lm_head;        // [V, C]: == wte when tied
};

class LoraAdapters;  // model/lora.h
class KvCache;       // model/kv_cache.h

// Looking inside a cached forward pass (the attention view, generate/inspect.h): what one block
// computed, as host fp32 copies [n, C] of the pass's n inputs. ln_in[k] / ln_out[k] are the input
// and output of ln_1 (k = 0) and ln_2 (k = 1) as the block runs them: pre-LN, ln_1 normalises the
// block's input and ln_2 the stream after the attention's residual add; post-LN (GPT-1), ln_1
// normalises the input plus the attention and ln_2 that plus the MLP, which is the block's output.
// out is the residual stream the block hands on (pre-LN: after the MLP's residual add).
struct BlockStates {
  int layer = 0, n = 0, C = 0;
  const float* ln_in[2] = {nullptr, nullptr};
  const float* ln_out[2] = {nullptr, nullptr};
  const float* out = nullptr;
};

// Hooks into GPT::block_forward during a cached pass (forward_cached). Every hook is optional; the
// pass computes the same numbers with or without an observer.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // Layer l's attention probabilities go to this capture (host memory, ops.h; the CPU backends), or
  // nowhere when null.
  virtual const ops::AttentionCapture* attention_capture(int layer) {
    (void)layer;
    return nullptr;
  }
  // Whether block_states() is called after each block (it costs copies to the host).
  virtual bool wants_states() const { return false; }
  virtual void block_states(const BlockStates& s) { (void)s; }
  // The logit lens: the model's own head (ln_f for pre-LN, then the LM head) applied to each
  // block's output for the pass's inputs [lens_from(n), n); lens_logits() gets them as host fp32
  // [k, V] for inputs i0 .. i0+k-1, a few rows at a time. n (the default): no lens.
  virtual int lens_from(int n) const { return n; }
  virtual void lens_logits(int layer, int i0, int k, const float* logits) {
    (void)layer, (void)i0, (void)k, (void)logits;
  }
};

class GPT {
 public:
  // Builds the network in training storage with all parameters zero (see init_gpt2, or io/model_dir.h to
  // load), to run on `backend` (the CPU unless told otherwise; the backend must outlive the model).
  explicit GPT(const ModelConfig& cfg, Backend& backend = cpu_backend());
  // Packed storage: the matrices in `type`, all absent until set_packed_matrix(); the vectors zero.
  GPT(const ModelConfig& cfg, Backend& backend, ops::WeightType type);
  GPT(GPT&&) noexcept;
  GPT& operator=(GPT&&) noexcept;
  GPT(const GPT&) = delete;
  GPT& operator=(const GPT&) = delete;
  ~GPT();

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() const { return *be_; }

  // ---- storage --------------------------------------------------------------------------------------
  bool packed() const { return packed_; }
  // The matrices' format: F32 for a training model, else its packed type.
  ops::WeightType weight_type() const { return type_; }
  // Training storage -> packed storage in `type`: the matrices go to the backend in that format and
  // their fp32 copies are freed. Throws with LoRA adapters attached (merge them first).
  void pack(ops::WeightType type);
  // Packed storage: a matrix by its parameter name ("h.0.attn.c_attn.weight", "wte.weight", ...),
  // as [OUT, IN] rows in the model's type (io/model_dir.h builds them from a file, or from_conv1d). Its
  // shape must be the config's.
  void set_packed_matrix(std::string_view name, ops::PackedMatrix&& m);
  const PackedWeight* packed_matrix(std::string_view name) const;  // null if absent or not packed
  // Bytes of the weights as stored (the parameter arena plus the packed matrices).
  size_t weight_bytes() const;

  // The tensors in the parameter arena: every one in training storage, the vectors (and wpe) only
  // in packed storage. num_parameters() counts the arena's floats.
  const std::vector<ParamInfo>& layout() const { return layout_; }
  size_t num_parameters() const { return num_params_; }

  // The flat parameter arena in host memory and tensors by name. On a device backend the model runs
  // on its own copy: a mutable access marks the host copy as changed, and the next forward uploads
  // it. download_parameters() brings the device copy back.
  float* params() {
    host_changed_ = true;
    return params_.data();
  }
  const float* params() const { return params_.data(); }
  const ParamInfo* find(std::string_view name) const;  // nullptr if absent
  float* param(std::string_view name);                 // throws gpt::Error if absent
  const float* param(std::string_view name) const;
  const ModelTensors& weights() const { return w_; }
  // The parameters in backend memory (the host arena itself on the CPU).
  float* device_params();
  void upload_parameters();
  void download_parameters();

  // The gradient arena, same layout, in backend memory (host memory on the CPU); allocated
  // (zeroed) on first use. Training storage only. A model with nothing trainable (LoRA) never
  // allocates it unless grads() is called.
  float* grads();
  void zero_grad();  // and the attached LoRA adapters' gradients

  // Dropout is a training setting, not part of the shape: it can change at any time.
  void set_dropout(float p);

  // GPT-2's initialisation: weights N(0, 0.02), the residual projections (attn.c_proj,
  // mlp.c_proj) N(0, 0.02/sqrt(2 n_layer)), biases 0, LayerNorm gains 1. Deterministic in seed.
  void init_gpt2(uint64_t seed);

  // ---- the forward over whole sequences (training, evaluation) ----------------------------------
  // Runs B sequences of T tokens (T <= n_ctx), inputs [B, T] row-major. With targets ([B, T],
  // kIgnoreIndex = not scored) returns the mean cross-entropy over scored positions, else NaN.
  // training = true applies dropout (seeded by dropout_seed) and keeps what backward needs.
  // Throws gpt::Error on an id >= vocab_size, T > n_ctx, or B, T < 1.
  float forward(const TokenId* inputs, const int32_t* targets, int B, int T, bool training = false,
                uint64_t dropout_seed = 0);
  // Logits [B, T, V] of the last forward, as fp32 host floats (copied from a device backend on first
  // access). backward() overwrites them with their gradient.
  const float* logits() const;
  // Per-position cross-entropy [B, T] of the last forward with targets (0 where ignored), host floats.
  const float* position_losses() const;
  // Number of scored targets in the last forward.
  size_t scored_targets() const { return scored_; }

  // Adds grad_scale * d(mean loss)/d(parameters) to grads(). Needs the last forward to have run
  // with training = true and targets. Gradient accumulation: call forward/backward repeatedly
  // with grad_scale = 1/steps.
  void backward(float grad_scale = 1.0f);

  // ---- hidden states (a task head on top of the network) ----------------------------------------
  // Runs everything up to, not including, the LM head (no logits, no loss). hidden() is then the
  // head's input [B, T, C] as fp32 host floats: ln_f's output for pre-LN, the last block's output
  // for post-LN. Same arguments and errors as forward().
  void forward_hidden(const TokenId* inputs, int B, int T, bool training = false, uint64_t dropout_seed = 0);
  const float* hidden() const;
  // Adds the parameter gradients that the gradient `dhidden` ([B, T, C], host fp32) on hidden()
  // makes, with no LM-head term. Needs the last forward (forward_hidden or forward) with training.
  // On a backend whose activations are not fp32 it fails with one message.
  void backward_hidden(const float* dhidden);

  // ---- the forward over a key/value cache (generate/decoder.h) -----------------------------------
  // The activations of cached passes of up to `rows` inputs, in backend memory, planned once.
  class Workspace;
  struct WorkspaceDeleter {
    void operator()(Workspace* w) const;
  };
  using WorkspacePtr = std::unique_ptr<Workspace, WorkspaceDeleter>;
  WorkspacePtr make_workspace(int rows);
  static size_t workspace_bytes(const Workspace& ws);
  // One pass of n <= rows inputs: input i is token ids[i] at position pos[i] of cache row rows[i]
  // (host arrays; the positions of one row's inputs consecutive). Every layer's keys and values go
  // into the cache; the logits of inputs [want0, n) go to host_out ([n - want0, V], fp32) unless it
  // is null. An observer (may be null) sees inside the blocks (ForwardObserver above).
  void forward_cached(Workspace& ws, KvCache& cache, int n, const TokenId* ids, const int32_t* rows,
                      const int32_t* pos, int want0, float* host_out, ForwardObserver* observer = nullptr);

  // ---- which gradients backward computes --------------------------------------------------------
  // Every tensor's after construction. What trains is the optimizer's choice (train/trainable.h),
  // which sets this mask: a tensor without it gets no gradient (its grads() stay as they are, zero
  // after zero_grad), and backward stops below the lowest layer that needs one (or has a LoRA
  // adapter). The embeddings may require a gradient only when every tensor does.
  void set_requires_grad(const std::vector<char>& mask);  // one flag per layout() tensor
  bool requires_grad(size_t tensor) const { return requires_grad_[tensor] != 0; }

  // ---- LoRA (model/lora.h) -----------------------------------------------------------------------
  // Attaches adapters (nullptr detaches): forward adds their low-rank updates, backward computes
  // their gradients (and the base's that set_requires_grad asks for: none when only the adapters
  // train, Trainable::none). The adapters must live on the model's backend and outlive the
  // attachment. The CPU backends only (their
  // tensors are host memory; Backend::lora_forward / lora_backward run them).
  void attach_lora(LoraAdapters* adapters);
  LoraAdapters* lora() const { return lora_; }

  // Bytes of the parameter, gradient and activation arenas now allocated.
  size_t parameter_bytes() const { return params_.bytes(); }
  size_t gradient_bytes() const { return grads_.bytes(); }
  size_t activation_bytes() const;
  // The activation bytes forward (and with training, backward) would allocate for B sequences of T
  // with logits, on `backend`: the same plan, counted without a model (gpt info --budget).
  static size_t planned_activation_bytes(const ModelConfig& cfg, Backend& backend, int B, int T, bool training);

 private:
  struct Pass;
  // The matrix operands of the forward: fp32 masters in backend memory, or packed weights.
  struct LayerWeights {
    Weight qkv, attn_proj, fc, fc_proj;
  };
  Weight wte() const;
  Weight lm_head() const;
  const LayerWeights& layer_weights(int l) const { return lw_[l]; }
  void bind_weights();
  void require_training(const char* what) const;

  void plan(Workspace& a, int B, int T, bool training, bool logits);
  // The forward of a pass (whole sequences, or inputs over a cache) up to the head's input (a.lnf).
  void run_blocks(Workspace& a, const Pass& p);
  // One block's forward: x (the block's input) -> the next LayerNorm's output, written into the next
  // block's ln1 (pre-LN) or this block's ln2 (post-LN), which is the block's output.
  void block_forward(Workspace& a, const Pass& p, int l, const Act* x);
  // The LM head over inputs [i0, n) of its input x [n, C] (after ln_f, if the model has one) in a
  // cached pass: their logits go to the host, head_rows of them at a time, each batch handed to
  // sink(first input, count, logits) (may be empty), into
  // host_out ([n - i0, V]) when not null, else a buffer of the workspace.
  void head_to_host(Workspace& a, const Act* x, int i0, int n, float* host_out,
                    const std::function<void(int, int, const float*)>& sink);
  // A projection of block l: out = in @ W + b, and the attached adapter's low-rank update.
  void project(Workspace& a, const Pass& p, int l, int target, Act* out, const Act* in);
  float run_forward(const TokenId* inputs, const int32_t* targets, int B, int T, bool training,
                    uint64_t dropout_seed, bool head);
  // From the gradient of the head's input (in a.dbuf for pre-LN, a.dres for post-LN) down.
  void backward_trunk();
  void rebind_grads();
  bool any_requires_grad() const;
  bool all_require_grad() const;
  int lowest_grad_layer() const;  // -1: the embeddings; n_layer: none

  ModelConfig cfg_;
  Backend* be_;
  bool packed_ = false;
  ops::WeightType type_ = ops::WeightType::F32;
  std::vector<ParamInfo> layout_;
  size_t num_params_ = 0;
  FloatArena params_;         // host
  BackendBuffer dev_params_;  // device backends only
  BackendBuffer grads_;       // backend memory
  bool host_changed_ = true;  // the host parameters may differ from the device copy
  ModelTensors w_{};          // over the host parameters
  ModelTensors dw_{}, g_{};   // over the backend's parameters and gradients
  std::map<std::string, std::unique_ptr<PackedWeight>, std::less<>> packed_w_;  // packed storage
  std::vector<LayerWeights> lw_;
  Workspace* acts_ = nullptr;  // the workspace of forward() and backward()
  size_t scored_ = 0;
  std::vector<char> requires_grad_;  // per layout() tensor
  ModelTensors gt_{};            // g_ with frozen tensors as nullptr
  BackendBuffer sink_;           // [C]: LayerNorm gain gradients of frozen LayerNorms land here
  LoraAdapters* lora_ = nullptr;
};

// Binds tensor pointers for a config's layout over an arena base (used for params and grads).
ModelTensors bind_tensors(const ModelConfig& cfg, const std::vector<ParamInfo>& layout, float* base);

// The block a tensor belongs to: -1 for the embeddings, n_layer for ln_f and lm_head.
int tensor_layer(const ParamInfo& p, int n_layer);
// True for the parameters a packed model keeps as matrices (2-D, except the position embedding).
bool is_packed_matrix(const ParamInfo& p);
// A matrix parameter as [OUT, IN] rows in `type`, from its fp32 values as the arena stores them
// (Conv1D [IN, OUT]; wte and lm_head already [V, C] rows).
ops::PackedMatrix pack_parameter(const ParamInfo& p, const float* values, ops::WeightType type);

}  // namespace gpt
