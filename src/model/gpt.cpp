// The GPT forward and backward passes, op by op: one transformer for training, evaluation, a
// prefill and a decode step. Pre-LN (GPT-2/3) block:
//   x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))        ... then ln_f
// Post-LN (GPT-1) block:
//   x = ln_1(x + drop(attn(x)));  x = ln_2(x + drop(mlp(x)))        ... no ln_f
// where attn = c_proj(attention(c_attn(.))) and mlp = c_proj(gelu(c_fc(.))). The attention of a
// pass over whole sequences is causal (or banded) within each sequence; a pass over a key/value
// cache first writes its keys and values into the cache, then attends to what each row has cached.
#include "model/gpt.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/parallel.h"
#include "model/kv_cache.h"
#include "model/lora.h"
#include "ops/ops.h"

namespace gpt {

// ---- parameter binding -------------------------------------------------------------------------

ModelTensors bind_tensors(const ModelConfig& cfg, const std::vector<ParamInfo>& layout, float* base) {
  ModelTensors t{};
  auto at = [&](const std::string& name) -> float* {
    for (const auto& p : layout)
      if (p.name == name) return base + p.offset;
    return nullptr;
  };
  t.wte = at("wte.weight");
  t.wpe = at("wpe.weight");
  for (int l = 0; l < cfg.n_layer; l++) {
    const std::string h = fmt::format("h.{}.", l);
    LayerTensors L{};
    L.ln1_w = at(h + "ln_1.weight");
    L.ln1_b = at(h + "ln_1.bias");
    L.qkv_w = at(h + "attn.c_attn.weight");
    L.qkv_b = at(h + "attn.c_attn.bias");
    L.attn_proj_w = at(h + "attn.c_proj.weight");
    L.attn_proj_b = at(h + "attn.c_proj.bias");
    L.ln2_w = at(h + "ln_2.weight");
    L.ln2_b = at(h + "ln_2.bias");
    L.fc_w = at(h + "mlp.c_fc.weight");
    L.fc_b = at(h + "mlp.c_fc.bias");
    L.fc_proj_w = at(h + "mlp.c_proj.weight");
    L.fc_proj_b = at(h + "mlp.c_proj.bias");
    t.layers.push_back(L);
  }
  t.lnf_w = at("ln_f.weight");
  t.lnf_b = at("ln_f.bias");
  t.lm_head = cfg.tied_head ? t.wte : at("lm_head.weight");
  return t;
}

bool is_packed_matrix(const ParamInfo& p) { return p.shape.size() == 2 && p.name != "wpe.weight"; }

ops::PackedMatrix pack_parameter(const ParamInfo& p, const float* values, ops::WeightType type) {
  if (!is_packed_matrix(p)) fail("internal error: {} is not a matrix parameter", p.name);
  const int a = static_cast<int>(p.shape[0]), b = static_cast<int>(p.shape[1]);
  if (p.name == "wte.weight" || p.name == "lm_head.weight") return ops::PackedMatrix::from_rows(values, a, b, type);
  return ops::PackedMatrix::from_conv1d(values, a, b, type);
}

// ---- activations ---------------------------------------------------------------------------------

// Everything a forward pass writes, carved out of one backend allocation. Activations (Act) have
// the backend's element type; per-row statistics are fp32. In training each layer keeps its own
// tensors for the backward pass; in inference all layers share one set (each layer reads only its
// input, which the previous layer left in place).
struct LayerActs {
  Act* ln1;                    // [N,C]
  float *ln1_mean, *ln1_rstd;  // [N], [N]
  Act* qkv;                    // [N,3C]
  void* att;                   // what attention keeps for its backward (training only)
  Act* atty;                   // [N,C] attention output before c_proj
  Act* res2;                   // [N,C] after the attention residual
  Act* ln2;                    // [N,C]
  float *ln2_mean, *ln2_rstd;  // [N], [N]
  Act* fch;                    // [N,4C] before GELU
  Act* fch_gelu;               // [N,4C]
  Act* res3;                   // [N,C] after the MLP residual (pre-LN block output)
  Act* lora_u[kLoraTargets];   // [N,r] each: an adapter's drop(x) A^T, for its backward (adapters attached)
};

class GPT::Workspace {
 public:
  // The shape it is planned for: a pass over B sequences of T (N = B T rows), or (cached) over up
  // to `rows` inputs of a key/value cache.
  int B = 0, T = 0, rows = 0;
  bool training = false, cached = false, with_logits = false;
  int head_rows = 0;  // rows of logits one LM-head call makes
  size_t scratch_bytes = 0;
  BackendBuffer arena;
  Act* encoded = nullptr;  // [N,C] embeddings (after dropout)
  std::vector<LayerActs> layers;
  Act* proj = nullptr;  // [N,C] scratch: a c_proj output before its residual add
  Act* lnf = nullptr;
  float *lnf_mean = nullptr, *lnf_rstd = nullptr;
  Act* logits = nullptr;       // [N,V] (cached: [head_rows, V])
  float* losses = nullptr;     // [N]
  float* lse = nullptr;        // [N]
  void* scratch = nullptr;     // attention's
  TokenId* inputs = nullptr;   // [N] in backend memory
  int32_t* targets = nullptr;  // [N] in backend memory
  int32_t* index = nullptr;    // cached: [2][rows] positions, then cache rows, in backend memory
  // backward buffers (training only)
  Act *dres = nullptr, *dbuf = nullptr, *dbuf2 = nullptr, *dqkv = nullptr, *dfch = nullptr;
  // LoRA adapters (planned when attached): the rank, and scratch for a dropped input [N, 4C] and for
  // du [N, r] (backward)
  int lora_r = 0;
  Act *lora_xd = nullptr, *lora_du = nullptr;
  std::vector<int32_t> host_targets, host_index;
  std::vector<TokenId> host_inputs;  // training: the ids again, for the embedding backward
  bool have_targets = false;
  uint64_t dropout_seed = 0;
  float dropout_p = 0.0f;       // the dropout the last forward applied, for its backward
  float lora_dropout_p = 0.0f;  // and on the LoRA adapters' inputs
  // host copies of the logits and losses, for device backends (filled on first access)
  std::vector<float> host_logits, host_losses, host_hidden;
  std::vector<float> host_lens;  // cached passes: a batch of logit-lens logits (ForwardObserver)
  bool host_logits_valid = false, host_losses_valid = false, host_hidden_valid = false;
  bool have_logits = false;  // the last forward ran the LM head
};

// What one forward runs.
struct GPT::Pass {
  int n = 0;     // input rows
  int B = 0, T = 0;  // whole sequences (n = B T); unused with a cache
  bool training = false;
  float dropout = 0.0f;
  uint64_t seed = 0;
  KvCache* cache = nullptr;  // a cached pass
  CacheIndex at;             // ... where its inputs sit
  ForwardObserver* observer = nullptr;  // cached passes only
  ops::Dropout drop(int layer, int site) const { return {dropout, ops::dropout_seed(seed, layer, site)}; }
};

namespace {

// Carves a workspace's tensors out of `base` (null: only counts) for a pass of N rows; returns the
// bytes used. One carving serves the plan (count, allocate, carve again) and the estimate of
// GPT::planned_activation_bytes.
size_t carve_workspace(GPT::Workspace& a, char* base, const ModelConfig& cfg, const Backend& be, size_t N,
                       int B, int T, bool training, size_t logit_rows, int lora_r, size_t scratch_bytes) {
  const bool cached = a.cached;
  const int Ci = cfg.n_embd, Hi = cfg.n_head;
  const size_t C = Ci, V = cfg.vocab_size;
  const size_t layer_sets = training ? cfg.n_layer : 1;
  const size_t att_bytes = training ? be.attention_saved_bytes(B, T, Ci, Hi) : 0;
  const size_t es = act_size(be.act_type());
  size_t used = 0;
  auto take_bytes = [&](size_t bytes) -> void* {
    void* r = base ? base + used : nullptr;
    used += (bytes + 255) / 256 * 256;  // every tensor 256-byte aligned
    return r;
  };
  auto act = [&](size_t n) { return static_cast<Act*>(take_bytes(n * es)); };
  auto f32 = [&](size_t n) { return static_cast<float*>(take_bytes(n * sizeof(float))); };
  a.encoded = act(N * C);
  a.layers.assign(cfg.n_layer, {});
  for (size_t l = 0; l < layer_sets; l++) {
    LayerActs& L = a.layers[l];
    L.ln1 = act(N * C);
    L.ln1_mean = f32(N);
    L.ln1_rstd = f32(N);
    L.qkv = act(N * 3 * C);
    L.att = training ? take_bytes(att_bytes) : nullptr;
    L.atty = act(N * C);
    L.res2 = act(N * C);
    L.ln2 = act(N * C);
    L.ln2_mean = f32(N);
    L.ln2_rstd = f32(N);
    L.fch = act(N * 4 * C);
    L.fch_gelu = act(N * 4 * C);
    L.res3 = act(N * C);
    for (int t = 0; t < kLoraTargets; t++) L.lora_u[t] = lora_r ? act(N * lora_r) : nullptr;
  }
  for (size_t l = layer_sets; l < a.layers.size(); l++) a.layers[l] = a.layers[0];
  a.proj = act(N * C);
  a.lnf = act(N * C);
  a.lnf_mean = f32(N);
  a.lnf_rstd = f32(N);
  a.logits = logit_rows ? act(logit_rows * V) : nullptr;
  a.losses = cached ? nullptr : f32(N);
  a.lse = cached ? nullptr : f32(N);
  a.scratch = take_bytes(scratch_bytes);
  a.inputs = static_cast<TokenId*>(take_bytes(N * sizeof(TokenId)));
  a.targets = cached ? nullptr : static_cast<int32_t*>(take_bytes(N * sizeof(int32_t)));
  a.index = cached ? static_cast<int32_t*>(take_bytes(2 * N * sizeof(int32_t))) : nullptr;
  a.lora_xd = lora_r ? act(N * 4 * C) : nullptr;
  a.lora_du = lora_r && training ? act(N * lora_r) : nullptr;
  if (training) {
    a.dres = act(N * C);
    a.dbuf = act(N * C);
    a.dbuf2 = act(N * C);
    a.dqkv = act(N * 3 * C);
    a.dfch = act(N * 4 * C);
  }
  return used;
}

}  // namespace

void GPT::plan(Workspace& a, int B, int T, bool training, bool logits) {
  const int Ci = cfg_.n_embd, Hi = cfg_.n_head;
  const bool cached = a.cached;
  // The attention scratch can depend on the thread ceiling, so a change of threads re-plans too.
  const size_t scratch_bytes = cached ? be_->attention_cached_scratch_bytes(a.rows, Ci, Hi, cfg_.n_ctx)
                                      : be_->attention_scratch_bytes(B, T, Ci, Hi);
  const int lora_r = lora_ ? lora_->config().r : 0;
  if (!cached && a.B == B && a.T == T && a.training == training && a.scratch_bytes == scratch_bytes &&
      (a.with_logits || !logits) && a.lora_r == lora_r && !a.arena.empty())
    return;
  const size_t N = cached ? static_cast<size_t>(a.rows) : static_cast<size_t>(B) * T;
  const size_t logit_rows = !logits ? 0 : cached ? static_cast<size_t>(a.head_rows) : N;
  // Two passes over the same carving: the first counts the bytes, the second hands out pointers.
  const size_t total =
      carve_workspace(a, nullptr, cfg_, *be_, N, B, T, training, logit_rows, lora_r, scratch_bytes);
  a.arena = BackendBuffer();  // release the old plan before allocating the new one
  a.arena = BackendBuffer(*be_, total);
  carve_workspace(a, static_cast<char*>(a.arena.get()), cfg_, *be_, N, B, T, training, logit_rows, lora_r,
                  scratch_bytes);
  a.B = B;
  a.T = T;
  a.training = training;
  a.with_logits = logits;
  a.scratch_bytes = scratch_bytes;
  a.lora_r = lora_r;
  a.host_logits_valid = a.host_losses_valid = a.host_hidden_valid = false;
}

size_t GPT::planned_activation_bytes(const ModelConfig& cfg, Backend& backend, int B, int T, bool training) {
  Workspace a;
  const size_t N = static_cast<size_t>(B) * T;
  return carve_workspace(a, nullptr, cfg, backend, N, B, T, training, N, 0,
                         backend.attention_scratch_bytes(B, T, cfg.n_embd, cfg.n_head));
}

size_t GPT::activation_bytes() const { return acts_ ? acts_->arena.bytes() : 0; }
size_t GPT::workspace_bytes(const Workspace& ws) { return ws.arena.bytes(); }

// ---- construction and storage ------------------------------------------------------------------------

GPT::GPT(const ModelConfig& cfg, Backend& backend) : cfg_(cfg), be_(&backend) {
  cfg_.validate();
  layout_ = parameter_layout(cfg_);
  num_params_ = layout_.empty() ? 0 : layout_.back().offset + layout_.back().numel;
  params_.resize(num_params_);
  w_ = bind_tensors(cfg_, layout_, params_.data());
  if (!be_->host_memory()) dev_params_ = BackendBuffer(*be_, num_params_ * sizeof(float));
  dw_ = bind_tensors(cfg_, layout_, device_params());
  requires_grad_.assign(layout_.size(), 1);
  bind_weights();
}

// The arena of a packed model: every tensor but the matrices, in layout order.
static std::vector<ParamInfo> vector_layout(const ModelConfig& cfg) {
  std::vector<ParamInfo> out;
  size_t offset = 0;
  for (ParamInfo p : parameter_layout(cfg)) {
    if (is_packed_matrix(p)) continue;
    p.offset = offset;
    offset += p.numel;
    out.push_back(std::move(p));
  }
  return out;
}

GPT::GPT(const ModelConfig& cfg, Backend& backend, ops::WeightType type) : cfg_(cfg), be_(&backend) {
  cfg_.validate();
  packed_ = true;
  type_ = type;
  layout_ = vector_layout(cfg_);
  num_params_ = layout_.empty() ? 0 : layout_.back().offset + layout_.back().numel;
  params_.resize(num_params_);
  w_ = bind_tensors(cfg_, layout_, params_.data());
  if (!be_->host_memory()) dev_params_ = BackendBuffer(*be_, num_params_ * sizeof(float));
  dw_ = bind_tensors(cfg_, layout_, device_params());
  requires_grad_.assign(layout_.size(), 0);
  bind_weights();
}

GPT::GPT(GPT&& o) noexcept { *this = std::move(o); }

GPT& GPT::operator=(GPT&& o) noexcept {
  if (this != &o) {
    delete acts_;
    cfg_ = std::move(o.cfg_);
    be_ = o.be_;
    packed_ = o.packed_;
    type_ = o.type_;
    layout_ = std::move(o.layout_);
    num_params_ = o.num_params_;
    params_ = std::move(o.params_);
    dev_params_ = std::move(o.dev_params_);
    grads_ = std::move(o.grads_);
    host_changed_ = o.host_changed_;
    w_ = std::move(o.w_);
    dw_ = std::move(o.dw_);
    g_ = std::move(o.g_);
    packed_w_ = std::move(o.packed_w_);
    lw_ = std::move(o.lw_);
    acts_ = std::exchange(o.acts_, nullptr);
    scored_ = o.scored_;
    requires_grad_ = std::move(o.requires_grad_);
    gt_ = std::move(o.gt_);
    sink_ = std::move(o.sink_);
    lora_ = std::exchange(o.lora_, nullptr);
  }
  return *this;
}

GPT::~GPT() { delete acts_; }

void GPT::bind_weights() {
  auto packed = [&](const std::string& name) -> const PackedWeight* {
    auto it = packed_w_.find(name);
    return it == packed_w_.end() ? nullptr : it->second.get();
  };
  lw_.resize(cfg_.n_layer);
  for (int l = 0; l < cfg_.n_layer; l++) {
    const std::string h = fmt::format("h.{}.", l);
    const LayerTensors& D = dw_.layers[l];
    lw_[l] = {{D.qkv_w, packed(h + "attn.c_attn.weight")},
              {D.attn_proj_w, packed(h + "attn.c_proj.weight")},
              {D.fc_w, packed(h + "mlp.c_fc.weight")},
              {D.fc_proj_w, packed(h + "mlp.c_proj.weight")}};
  }
}

Weight GPT::wte() const {
  auto it = packed_w_.find("wte.weight");
  return {dw_.wte, it == packed_w_.end() ? nullptr : it->second.get()};
}
Weight GPT::lm_head() const {
  if (cfg_.tied_head) return wte();
  auto it = packed_w_.find("lm_head.weight");
  return {dw_.lm_head, it == packed_w_.end() ? nullptr : it->second.get()};
}

void GPT::require_training(const char* what) const {
  if (packed_)
    fail("{} needs a model in training storage; this one's matrices are packed as {} for inference", what,
         ops::weight_type_name(type_));
}

void GPT::set_packed_matrix(std::string_view name, ops::PackedMatrix&& m) {
  if (!packed_) fail("internal error: set_packed_matrix on a model in training storage");
  const ParamInfo* p = nullptr;
  const auto full = parameter_layout(cfg_);
  for (const auto& q : full)
    if (q.name == name && is_packed_matrix(q)) p = &q;
  if (!p) fail("the model has no matrix \"{}\"", name);
  const bool rows = name == "wte.weight" || name == "lm_head.weight";
  const int out = static_cast<int>(rows ? p->shape[0] : p->shape[1]);
  const int in = static_cast<int>(rows ? p->shape[1] : p->shape[0]);
  if (m.out() != out || m.in() != in)
    fail("matrix \"{}\" is [{}, {}], the config needs [{}, {}]", name, m.out(), m.in(), out, in);
  if (m.type() != type_)
    fail("matrix \"{}\" is {}, the model's matrices are {}", name, ops::weight_type_name(m.type()),
         ops::weight_type_name(type_));
  packed_w_[std::string(name)] = be_->adopt_weight(std::move(m));
  bind_weights();
}

const PackedWeight* GPT::packed_matrix(std::string_view name) const {
  auto it = packed_w_.find(name);
  return it == packed_w_.end() ? nullptr : it->second.get();
}

size_t GPT::weight_bytes() const {
  size_t n = params_.bytes();
  for (const auto& [name, w] : packed_w_) n += w->bytes();
  return n;
}

void GPT::pack(ops::WeightType type) {
  require_training("pack()");
  // The packed weights are the base's: attached adapters would silently be lost.
  if (lora_) fail("the model has LoRA adapters attached: merge them first (merge_lora, gpt lora merge)");
  download_parameters();
  GPT p(cfg_, *be_, type);
  for (const ParamInfo& info : layout_) {
    const float* src = params_.data() + info.offset;
    if (is_packed_matrix(info))
      p.set_packed_matrix(info.name, pack_parameter(info, src, type));
    else
      std::memcpy(p.param(info.name), src, info.numel * sizeof(float));
  }
  p.set_dropout(cfg_.dropout);
  *this = std::move(p);
}

const ParamInfo* GPT::find(std::string_view name) const {
  for (const auto& p : layout_)
    if (p.name == name) return &p;
  return nullptr;
}
float* GPT::param(std::string_view name) {
  const ParamInfo* p = find(name);
  if (!p) fail("the model has no parameter \"{}\"", name);
  return params() + p->offset;
}
const float* GPT::param(std::string_view name) const {
  const ParamInfo* p = find(name);
  if (!p) fail("the model has no parameter \"{}\"", name);
  return params_.data() + p->offset;
}

float* GPT::device_params() {
  return be_->host_memory() ? params_.data() : static_cast<float*>(dev_params_.get());
}
void GPT::upload_parameters() {
  if (!be_->host_memory()) be_->to_device(dev_params_.get(), params_.data(), num_params_ * sizeof(float));
  if (!packed_) be_->parameters_changed(device_params(), num_params_);
  host_changed_ = false;
}
void GPT::download_parameters() {
  if (!be_->host_memory()) be_->to_host(params_.data(), dev_params_.get(), num_params_ * sizeof(float));
  host_changed_ = false;
}

float* GPT::grads() {
  require_training("training");
  if (grads_.empty()) {
    grads_ = BackendBuffer(*be_, num_params_ * sizeof(float));  // zeroed
    g_ = bind_tensors(cfg_, layout_, static_cast<float*>(grads_.get()));
    rebind_grads();
  }
  return static_cast<float*>(grads_.get());
}
void GPT::attach_lora(LoraAdapters* adapters) {
  if (adapters) {
    require_training("LoRA");
    if (is_cuda(be_->kind()))  // the backend has no LoRA ops yet
      fail("LoRA adapters run on the cpu backends only, not yet on {} (merge them into the weights: gpt lora merge)",
           be_->name());
    if (&adapters->backend() != be_)
      fail("the LoRA adapters live on {}, the model runs on {}: make them on the model's backend",
           adapters->backend().name(), be_->name());
    const ModelConfig& c = adapters->model_config();
    if (c.n_layer != cfg_.n_layer || c.n_embd != cfg_.n_embd)
      fail("LoRA adapters for {} layers of width {} do not fit a model with {} layers of width {}", c.n_layer,
           c.n_embd, cfg_.n_layer, cfg_.n_embd);
  }
  lora_ = adapters;
}

void GPT::zero_grad() {
  if (lora_) lora_->zero_grad();
  // grads() allocates the arena zeroed; a frozen model (LoRA) never needs it.
  if (!grads_.empty()) be_->fill_zero(grads_.get(), num_params_ * sizeof(float));
}

void GPT::set_dropout(float p) {
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout must be in [0, 1), got {}", p);
  cfg_.dropout = p;
}

void GPT::init_gpt2(uint64_t seed) {
  require_training("init_gpt2()");
  std::mt19937_64 rng(seed);
  host_changed_ = true;
  const float resid_std = 0.02f / std::sqrt(2.0f * static_cast<float>(cfg_.n_layer));
  for (const auto& p : layout_) {
    float* x = params_.data() + p.offset;
    const bool is_ln_gain = p.name.find("ln_") != std::string::npos && p.name.ends_with(".weight");
    if (p.name.ends_with(".bias")) {
      std::fill(x, x + p.numel, 0.0f);
    } else if (is_ln_gain) {
      std::fill(x, x + p.numel, 1.0f);
    } else {
      const bool residual = p.name.ends_with("attn.c_proj.weight") || p.name.ends_with("mlp.c_proj.weight");
      std::normal_distribution<float> normal(0.0f, residual ? resid_std : 0.02f);
      for (size_t i = 0; i < p.numel; i++) x[i] = normal(rng);
    }
  }
}

// ---- results of the last forward -------------------------------------------------------------------

const float* GPT::logits() const {
  if (!acts_ || !acts_->have_logits) return nullptr;
  Workspace& a = *acts_;
  if (be_->host_memory() && be_->act_type() == ActType::F32) return static_cast<const float*>(a.logits);
  if (!a.host_logits_valid) {
    const size_t n = static_cast<size_t>(a.B) * a.T * cfg_.vocab_size;
    a.host_logits.resize(n);
    be_->act_to_host_f32(a.host_logits.data(), a.logits, n);
    a.host_logits_valid = true;
  }
  return a.host_logits.data();
}

const float* GPT::position_losses() const {
  if (!acts_) return nullptr;
  Workspace& a = *acts_;
  if (be_->host_memory()) return a.losses;
  if (!a.host_losses_valid) {
    a.host_losses.resize(static_cast<size_t>(a.B) * a.T);
    be_->to_host(a.host_losses.data(), a.losses, a.host_losses.size() * sizeof(float));
    a.host_losses_valid = true;
  }
  return a.host_losses.data();
}

const float* GPT::hidden() const {
  if (!acts_) return nullptr;
  Workspace& a = *acts_;
  if (be_->host_memory() && be_->act_type() == ActType::F32) return static_cast<const float*>(a.lnf);
  if (!a.host_hidden_valid) {
    a.host_hidden.resize(static_cast<size_t>(a.B) * a.T * cfg_.n_embd);
    be_->act_to_host_f32(a.host_hidden.data(), a.lnf, a.host_hidden.size());
    a.host_hidden_valid = true;
  }
  return a.host_hidden.data();
}

// ---- the forward: one transformer for every pass ------------------------------------------------------

void GPT::project(Workspace& a, const Pass& p, int l, int target, Act* out, const Act* in) {
  const LayerWeights& W = layer_weights(l);
  const LayerTensors& D = dw_.layers[l];
  const int n = p.n, C = cfg_.n_embd;
  const auto t = static_cast<LoraTarget>(target);
  switch (t) {
    case LoraTarget::Attn:
      be_->linear_forward(out, in, W.qkv, D.qkv_b, n, C, 3 * C);
      break;
    case LoraTarget::AttnProj:
      be_->linear_forward(out, in, W.attn_proj, D.attn_proj_b, n, C, C);
      break;
    case LoraTarget::Fc:
      be_->linear_forward(out, in, W.fc, D.fc_b, n, C, 4 * C);
      break;
    case LoraTarget::FcProj:
      be_->linear_forward(out, in, W.fc_proj, D.fc_proj_b, n, 4 * C, C);
      break;
  }
  // The adapter's update on top: out += scale * (drop(in) A^T) B^T (model/lora.h).
  if (lora_ && lora_->has(l, t)) {
    const LoraAdapters::Slot& s = lora_->slot(l, t);
    const ops::Dropout drop{p.training ? lora_->config().dropout : 0.0f, ops::dropout_seed(p.seed, l, 16 + target)};
    be_->lora_forward(out, a.layers[l].lora_u[target], a.lora_xd, in, s.a, s.b, n, s.in, lora_->config().r, s.out,
                      lora_->scale(), drop);
  }
}

void GPT::block_forward(Workspace& a, const Pass& p, int l, const Act* x) {
  Backend& be = *be_;
  const LayerTensors& Wl = dw_.layers[l];
  LayerActs& L = a.layers[l];
  const int n = p.n, C = cfg_.n_embd, H = cfg_.n_head, L_ = cfg_.n_layer;
  const size_t N = static_cast<size_t>(n);
  const float eps = cfg_.ln_eps;
  const bool pre = cfg_.ln == LnPlacement::Pre;
  const int band = cfg_.banded(l) ? cfg_.band : 0;

  // An observer's copies of the residual stream (the pass's rows share one set of tensors across
  // layers, so the block's input and pre-LN's ln_1 output are taken before they are overwritten).
  const bool observe = p.observer && p.observer->wants_states();
  std::vector<float> taps[5];  // ln_1 in, ln_1 out, ln_2 in, ln_2 out, the block's output
  auto tap = [&](int k, const Act* t) {
    taps[k].resize(N * C);
    be.act_to_host_f32(taps[k].data(), t, N * C);
  };
  if (observe && pre) {
    tap(0, x);
    tap(1, L.ln1);
  }

  // attention sub-block: qkv -> causal attention -> c_proj, then the residual add
  project(a, p, l, static_cast<int>(LoraTarget::Attn), L.qkv, pre ? L.ln1 : x);
  if (p.cache) {  // the pass's keys and values join the cache, then each query attends to its row
    KvCache& kv = *p.cache;
    be.kv_cache_write(kv.k(l), kv.v(l), kv.type(), L.qkv, p.at, n, C, H, cfg_.n_ctx);
    be.attention_cached(L.atty, a.scratch, L.qkv, kv.k(l), kv.v(l), kv.type(), p.at, n, C, H, cfg_.n_ctx,
                        band, p.observer ? p.observer->attention_capture(l) : nullptr);
  } else {
    be.attention_forward(L.atty, L.att, a.scratch, L.qkv, p.B, p.T, C, H, band, p.drop(l, 1), p.training);
  }
  project(a, p, l, static_cast<int>(LoraTarget::AttnProj), a.proj, L.atty);
  const Act* mlp_in;
  if (pre) {  // res2 = x + drop(proj); ln_2(res2) feeds the MLP
    be.residual_layernorm_forward(L.res2, L.ln2, L.ln2_mean, L.ln2_rstd, x, a.proj, p.drop(l, 2), Wl.ln2_w,
                                  Wl.ln2_b, n, C, eps);
    mlp_in = L.ln2;
  } else {  // ln_1(x + drop(proj)) feeds the MLP
    be.residual_layernorm_forward(L.res2, L.ln1, L.ln1_mean, L.ln1_rstd, x, a.proj, p.drop(l, 2), Wl.ln1_w,
                                  Wl.ln1_b, n, C, eps);
    mlp_in = L.ln1;
  }
  // MLP sub-block: c_fc + GELU -> c_proj, then the residual add
  if (lora_ && lora_->has(l, LoraTarget::Fc)) {  // the adapter adds to c_fc's output before the GELU
    project(a, p, l, static_cast<int>(LoraTarget::Fc), L.fch, mlp_in);
    be.gelu_forward(L.fch_gelu, L.fch, N * 4 * C);
  } else {
    be.linear_gelu_forward(L.fch_gelu, L.fch, mlp_in, layer_weights(l).fc, Wl.fc_b, n, C, 4 * C);
  }
  project(a, p, l, static_cast<int>(LoraTarget::FcProj), a.proj, L.fch_gelu);
  if (pre) {  // res3 = res2 + drop(proj); then the next block's ln_1, or ln_f after the last block
    const bool last = l + 1 == L_;
    LayerActs& next = a.layers[last ? l : l + 1];
    be.residual_layernorm_forward(L.res3, last ? a.lnf : next.ln1, last ? a.lnf_mean : next.ln1_mean,
                                  last ? a.lnf_rstd : next.ln1_rstd, L.res2, a.proj, p.drop(l, 3),
                                  last ? dw_.lnf_w : dw_.layers[l + 1].ln1_w,
                                  last ? dw_.lnf_b : dw_.layers[l + 1].ln1_b, n, C, eps);
  } else {  // ln_2(ln1 + drop(proj)) is the block's output
    be.residual_layernorm_forward(L.res3, L.ln2, L.ln2_mean, L.ln2_rstd, L.ln1, a.proj, p.drop(l, 3), Wl.ln2_w,
                                  Wl.ln2_b, n, C, eps);
  }
  if (!p.observer) return;
  const Act* out = pre ? L.res3 : L.ln2;  // the residual stream after this block
  if (observe) {
    if (!pre) {
      tap(0, L.res2);
      tap(1, L.ln1);
    }
    tap(2, pre ? L.res2 : L.res3);
    tap(3, L.ln2);
    tap(4, out);
    BlockStates s;
    s.layer = l;
    s.n = n;
    s.C = C;
    for (int k = 0; k < 2; k++) {
      s.ln_in[k] = taps[2 * k].data();
      s.ln_out[k] = taps[2 * k + 1].data();
    }
    s.out = taps[4].data();
    p.observer->block_states(s);
  }
  // The logit lens: the model's head on this block's output. Pre-LN normalises it with ln_f into
  // a.lnf first (the last block has just written the same values there).
  const int lens0 = p.observer->lens_from(n);
  if (lens0 < n) {
    const Act* head_in = out;
    if (pre) {
      be.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, out, dw_.lnf_w, dw_.lnf_b, n, C, eps);
      head_in = a.lnf;
    }
    head_to_host(a, head_in, std::max(lens0, 0), n, nullptr,
                 [&](int i0, int k, const float* logits) { p.observer->lens_logits(l, i0, k, logits); });
  }
}

void GPT::head_to_host(Workspace& a, const Act* x, int i0, int n, float* host_out,
                       const std::function<void(int, int, const float*)>& sink) {
  const int C = cfg_.n_embd, V = cfg_.vocab_size;
  const size_t es = act_size(be_->act_type());
  for (int j0 = i0; j0 < n; j0 += a.head_rows) {
    const int k = std::min(a.head_rows, n - j0);
    be_->lm_head_forward(a.logits, static_cast<const char*>(x) + static_cast<size_t>(j0) * C * es, lm_head(),
                         k, C, V);
    float* dst = host_out;
    if (dst) {
      dst += static_cast<size_t>(j0 - i0) * V;
    } else {
      a.host_lens.resize(static_cast<size_t>(k) * V);
      dst = a.host_lens.data();
    }
    be_->act_to_host_f32(dst, a.logits, static_cast<size_t>(k) * V);
    if (sink) sink(j0, k, dst);
  }
}

void GPT::run_blocks(Workspace& a, const Pass& p) {
  Backend& be = *be_;
  const int n = p.n, C = cfg_.n_embd, L_ = cfg_.n_layer;
  const size_t N = static_cast<size_t>(n);
  const float eps = cfg_.ln_eps;
  const bool pre = cfg_.ln == LnPlacement::Pre;
  // token + position embeddings
  if (p.cache)
    be.embedding_at(a.encoded, a.inputs, p.at.pos, wte(), dw_.wpe, n, C);
  else
    be.embedding_forward(a.encoded, a.inputs, wte(), dw_.wpe, p.B, p.T, C);
  be.dropout_forward(a.encoded, N * C, p.drop(-1, 0));
  const Act* x = a.encoded;  // the input of the next block
  // Pre-LN: the first block's ln_1; every later LayerNorm is fused with the residual add before it.
  if (pre && L_ > 0)
    be.layernorm_forward(a.layers[0].ln1, a.layers[0].ln1_mean, a.layers[0].ln1_rstd, x, dw_.layers[0].ln1_w,
                         dw_.layers[0].ln1_b, n, C, eps);
  for (int l = 0; l < L_; l++) {
    block_forward(a, p, l, x);
    x = pre ? a.layers[l].res3 : a.layers[l].ln2;
  }
  // The head's input (kept in lnf for its backward): ln_f's output (pre-LN, written above), or the
  // last block's output.
  if (pre && L_ == 0)
    be.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, x, dw_.lnf_w, dw_.lnf_b, n, C, eps);
  else if (!pre)
    be.copy(a.lnf, x, N * C * act_size(be.act_type()));
}

float GPT::forward(const TokenId* inputs, const int32_t* targets, int B, int T, bool training,
                   uint64_t dropout_seed) {
  return run_forward(inputs, targets, B, T, training, dropout_seed, /*head=*/true);
}

void GPT::forward_hidden(const TokenId* inputs, int B, int T, bool training, uint64_t dropout_seed) {
  run_forward(inputs, nullptr, B, T, training, dropout_seed, /*head=*/false);
}

float GPT::run_forward(const TokenId* inputs, const int32_t* targets, int B, int T, bool training,
                       uint64_t dropout_seed, bool head) {
  if (B < 1 || T < 1) fail("forward: empty batch (B = {}, T = {})", B, T);
  if (T > cfg_.n_ctx) fail("sequence of {} tokens is longer than the model's context of {}", T, cfg_.n_ctx);
  if (training && packed_) require_training("a training forward");
  const size_t N = static_cast<size_t>(B) * T;
  for (size_t i = 0; i < N; i++)
    if (inputs[i] >= static_cast<TokenId>(cfg_.vocab_size))
      fail("token id {} is out of range for a vocabulary of {}", inputs[i], cfg_.vocab_size);
  if (targets)
    for (size_t i = 0; i < N; i++)
      if (targets[i] != kIgnoreIndex && (targets[i] < 0 || targets[i] >= cfg_.vocab_size))
        fail("target id {} is out of range for a vocabulary of {}", targets[i], cfg_.vocab_size);

  Backend& be = *be_;
  adapt_threads();  // a step boundary (core/parallel.h)
  if (host_changed_ && !be.host_memory()) upload_parameters();
  if (!acts_) acts_ = new Workspace();
  plan(*acts_, B, T, training, head);
  Workspace& a = *acts_;
  be.to_device(a.inputs, inputs, N * sizeof(TokenId));
  if (training) a.host_inputs.assign(inputs, inputs + N);
  a.have_targets = targets != nullptr;
  if (targets) {
    a.host_targets.assign(targets, targets + N);
    be.to_device(a.targets, targets, N * sizeof(int32_t));
  }
  Pass p;
  p.n = static_cast<int>(N);
  p.B = B;
  p.T = T;
  p.training = training;
  p.dropout = training ? cfg_.dropout : 0.0f;
  p.seed = dropout_seed;
  a.dropout_seed = dropout_seed;
  a.dropout_p = p.dropout;
  a.lora_dropout_p = training && lora_ ? lora_->config().dropout : 0.0f;
  a.host_logits_valid = a.host_losses_valid = a.host_hidden_valid = false;
  a.have_logits = head;
  scored_ = 0;

  run_blocks(a, p);
  if (!head) return std::numeric_limits<float>::quiet_NaN();
  const int C = cfg_.n_embd, V = cfg_.vocab_size;
  be.lm_head_forward(a.logits, a.lnf, lm_head(), p.n, C, V);
  if (!targets) return std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i < N; i++) scored_ += targets[i] != kIgnoreIndex;
  const double total = be.cross_entropy_forward(a.losses, a.lse, a.logits, a.targets, p.n, V);
  return scored_ ? static_cast<float>(total / static_cast<double>(scored_)) : 0.0f;
}

// ---- the forward over a key/value cache ------------------------------------------------------------------

void GPT::WorkspaceDeleter::operator()(Workspace* w) const { delete w; }

GPT::WorkspacePtr GPT::make_workspace(int rows) {
  if (rows < 1) fail("workspace: rows must be >= 1, got {}", rows);
  WorkspacePtr ws(new Workspace());
  ws->cached = true;
  ws->rows = rows;
  ws->head_rows = std::min(rows, 64);  // logits [head_rows, V] per LM-head call
  ws->host_index.resize(2 * static_cast<size_t>(rows));
  plan(*ws, 1, rows, false, true);
  return ws;
}

void GPT::forward_cached(Workspace& a, KvCache& cache, int n, const TokenId* ids, const int32_t* rows,
                         const int32_t* pos, int want0, float* host_out, ForwardObserver* observer) {
  if (!a.cached) fail("internal error: forward_cached needs a workspace from make_workspace()");
  if (n < 1 || n > a.rows) fail("internal error: a cached pass of {} inputs in a workspace of {}", n, a.rows);
  if (want0 < 0 || want0 > n) fail("internal error: logits from input {} of {}", want0, n);
  Backend& be = *be_;
  adapt_threads();  // a step boundary (core/parallel.h)
  if (host_changed_ && !be.host_memory()) upload_parameters();
  if (a.scratch_bytes != be.attention_cached_scratch_bytes(a.rows, cfg_.n_embd, cfg_.n_head, cfg_.n_ctx))
    plan(a, 1, a.rows, false, true);  // the thread ceiling changed
  // One upload each: the ids, then the positions and cache rows.
  std::copy(pos, pos + n, a.host_index.begin());
  std::copy(rows, rows + n, a.host_index.begin() + n);
  be.to_device(a.inputs, ids, static_cast<size_t>(n) * sizeof(TokenId));
  be.to_device(a.index, a.host_index.data(), 2 * static_cast<size_t>(n) * sizeof(int32_t));
  Pass p;
  p.n = n;
  p.cache = &cache;
  p.at = {a.index + n, a.index, a.host_index.data() + n, a.host_index.data()};
  p.observer = observer;
  run_blocks(a, p);
  if (!host_out) return;
  // The head for the wanted inputs only, head_rows at a time; the logits go to the host.
  head_to_host(a, a.lnf, want0, n, host_out, nullptr);
}

// ---- backward --------------------------------------------------------------------------------------

void GPT::backward(float grad_scale) {
  require_training("backward()");
  if (!acts_ || !acts_->training || !acts_->have_targets || !acts_->have_logits)
    fail("backward() needs a forward pass with training = true and targets");
  Workspace& a = *acts_;
  Backend& be = *be_;
  if (any_requires_grad()) grads();
  const int C = cfg_.n_embd, V = cfg_.vocab_size;
  const int n = a.B * a.T;
  if (scored_ == 0) return;                             // nothing scored: the loss is constant
  if (lowest_grad_layer() > cfg_.n_layer) return;  // no gradient wanted
  a.host_logits_valid = false;

  // loss -> logits -> head input: a.dbuf when ln_f follows (its backward is the trunk's), else a.dres
  be.cross_entropy_backward(a.logits, a.lse, a.targets, n, V, grad_scale / static_cast<float>(scored_));
  be.lm_head_backward(cfg_.final_ln() ? a.dbuf : a.dres, gt_.lm_head, a.logits, a.lnf, dw_.lm_head, n, C, V);
  backward_trunk();
}

void GPT::backward_hidden(const float* dhidden) {
  require_training("backward_hidden()");
  if (!acts_ || !acts_->training) fail("backward_hidden() needs a forward pass with training = true");
  if (be_->act_type() != ActType::F32)
    fail("backward_hidden() needs fp32 activations; the {} backend has bf16 ones", be_->name());
  Workspace& a = *acts_;
  if (any_requires_grad()) grads();
  const size_t bytes = static_cast<size_t>(a.B) * a.T * cfg_.n_embd * sizeof(float);
  be_->to_device(cfg_.final_ln() ? a.dbuf : a.dres, dhidden, bytes);
  backward_trunk();
}

void GPT::backward_trunk() {
  Workspace& a = *acts_;
  Backend& be = *be_;
  const ModelTensors& W = dw_;
  const ModelTensors& G = gt_;  // frozen tensors are nullptr
  const int B = a.B, T = a.T, C = cfg_.n_embd, H = cfg_.n_head;
  const size_t N = static_cast<size_t>(B) * T;
  const size_t act_bytes = N * C * act_size(be.act_type());
  const int n = static_cast<int>(N);
  const bool pre = cfg_.ln == LnPlacement::Pre;
  auto drop = [&](int layer, int site) {
    return ops::Dropout{a.dropout_p, ops::dropout_seed(a.dropout_seed, layer, site)};
  };
  auto lora_drop = [&](int layer, LoraTarget t) {
    return ops::Dropout{a.lora_dropout_p, ops::dropout_seed(a.dropout_seed, layer, 16 + static_cast<int>(t))};
  };
  // Each adapter adds its share to the gradient of its projection's input (a no-op where a
  // projection has none), and its A and B gradients to the adapters'.
  auto lora_backward = [&](int layer, LoraTarget t, Act* dinp, const Act* dout, const Act* inp) {
    if (!lora_ || !lora_->has(layer, t)) return;
    const LoraAdapters::Slot& s = lora_->slot(layer, t);
    be.lora_backward(dinp, s.da, s.db, a.lora_du, a.lora_xd, dout, inp, a.layers[layer].lora_u[static_cast<int>(t)],
                     s.a, s.b, n, s.in, lora_->config().r, s.out, lora_->scale(), lora_drop(layer, t));
  };
  // The MLP's backward from d(c_proj output) in a.dbuf2 to d(its input) in dinp (overwritten, or
  // accumulated). With adapters on the MLP the fused c_fc + GELU backward cannot see mlp.c_proj's
  // adapter share of d(gelu output), so it runs op by op.
  auto mlp_backward = [&](int l, Act* dinp, const Act* mlp_in, bool accumulate) {
    const LayerTensors& Wl = W.layers[l];
    const LayerTensors& D = G.layers[l];
    LayerActs& L = a.layers[l];
    if (lora_ && (lora_->has(l, LoraTarget::Fc) || lora_->has(l, LoraTarget::FcProj))) {
      be.linear_backward(a.dfch, D.fc_proj_w, D.fc_proj_b, a.dbuf2, L.fch_gelu, Wl.fc_proj_w, n, 4 * C, C,
                         false);
      lora_backward(l, LoraTarget::FcProj, a.dfch, a.dbuf2, L.fch_gelu);
      be.gelu_backward(a.dfch, L.fch, a.dfch, N * 4 * C);
      be.linear_backward(dinp, D.fc_w, D.fc_b, a.dfch, mlp_in, Wl.fc_w, n, C, 4 * C, accumulate);
      lora_backward(l, LoraTarget::Fc, dinp, a.dfch, mlp_in);
      return;
    }
    be.linear_backward(nullptr, D.fc_proj_w, D.fc_proj_b, a.dbuf2, L.fch_gelu, Wl.fc_proj_w, n, 4 * C, C,
                       false);
    be.linear_gelu_backward(dinp, D.fc_w, D.fc_b, a.dfch, a.dbuf2, Wl.fc_proj_w, mlp_in, L.fch, Wl.fc_w, n, C,
                            4 * C, C, accumulate);
  };
  // The LayerNorm kernels always write a gain gradient: a frozen one goes to the sink.
  float* sink = static_cast<float*>(sink_.get());
  auto gain = [&](float* g) { return g ? g : sink; };
  const int lowest = lowest_grad_layer();
  if (lowest > cfg_.n_layer) return;

  Act* dres = a.dres;     // gradient w.r.t. the current block's output, then its input
  if (cfg_.final_ln()) {  // a.dbuf = d(ln_f output)
    const Act* x = cfg_.n_layer > 0 ? a.layers[cfg_.n_layer - 1].res3 : a.encoded;
    be.fill_zero(dres, act_bytes);
    be.layernorm_backward(dres, gain(G.lnf_w), G.lnf_b, a.dbuf, x, W.lnf_w, a.lnf_mean, a.lnf_rstd, n, C);
  }

  for (int l = cfg_.n_layer - 1; l >= std::max(lowest, 0); l--) {
    const LayerTensors& Wl = W.layers[l];
    const LayerTensors& D = G.layers[l];
    LayerActs& L = a.layers[l];
    const int band = cfg_.banded(l) ? cfg_.band : 0;
    const Act* x = l == 0 ? a.encoded : (pre ? a.layers[l - 1].res3 : a.layers[l - 1].ln2);
    if (pre) {
      // dres = d(res3). MLP branch: res3 = res2 + drop(c_proj(gelu(c_fc(ln_2(res2)))))
      be.dropout_backward(a.dbuf2, dres, N * C, drop(l, 3));
      mlp_backward(l, a.dbuf, L.ln2, false);
      be.layernorm_backward(dres, gain(D.ln2_w), D.ln2_b, a.dbuf, L.res2, Wl.ln2_w, L.ln2_mean, L.ln2_rstd, n,
                            C);
      // dres = d(res2). attention branch: res2 = x + drop(c_proj(attention(c_attn(ln_1(x)))))
      be.dropout_backward(a.dbuf2, dres, N * C, drop(l, 2));
      be.linear_backward(a.dbuf, D.attn_proj_w, D.attn_proj_b, a.dbuf2, L.atty, Wl.attn_proj_w, n, C, C,
                         false);
      lora_backward(l, LoraTarget::AttnProj, a.dbuf, a.dbuf2, L.atty);
      be.attention_backward(a.dqkv, a.scratch, a.dbuf, L.qkv, L.atty, L.att, B, T, C, H, band, drop(l, 1));
      be.linear_backward(a.dbuf, D.qkv_w, D.qkv_b, a.dqkv, L.ln1, Wl.qkv_w, n, C, 3 * C, false);
      lora_backward(l, LoraTarget::Attn, a.dbuf, a.dqkv, L.ln1);
      be.layernorm_backward(dres, gain(D.ln1_w), D.ln1_b, a.dbuf, x, Wl.ln1_w, L.ln1_mean, L.ln1_rstd, n, C);
      // dres = d(x)
    } else {
      // dres = d(ln_2 output). ln2 = LN(res3), res3 = ln1 + drop(mlp(ln1)), ln1 = LN(res2),
      // res2 = x + drop(attn(x)).
      be.fill_zero(a.dbuf, act_bytes);
      be.layernorm_backward(a.dbuf, gain(D.ln2_w), D.ln2_b, dres, L.res3, Wl.ln2_w, L.ln2_mean, L.ln2_rstd, n,
                            C);
      // a.dbuf = d(res3); d(ln1) = d(res3) + MLP backward, accumulated into dres
      be.copy(dres, a.dbuf, act_bytes);
      be.dropout_backward(a.dbuf2, a.dbuf, N * C, drop(l, 3));
      mlp_backward(l, dres, L.ln1, /*accumulate=*/true);
      // dres = d(ln1) -> a.dbuf = d(res2)
      be.fill_zero(a.dbuf, act_bytes);
      be.layernorm_backward(a.dbuf, gain(D.ln1_w), D.ln1_b, dres, L.res2, Wl.ln1_w, L.ln1_mean, L.ln1_rstd, n,
                            C);
      // d(x) = d(res2) + attention backward
      be.copy(dres, a.dbuf, act_bytes);
      be.dropout_backward(a.dbuf2, a.dbuf, N * C, drop(l, 2));
      be.linear_backward(a.dbuf, D.attn_proj_w, D.attn_proj_b, a.dbuf2, L.atty, Wl.attn_proj_w, n, C, C,
                         false);
      lora_backward(l, LoraTarget::AttnProj, a.dbuf, a.dbuf2, L.atty);
      be.attention_backward(a.dqkv, a.scratch, a.dbuf, L.qkv, L.atty, L.att, B, T, C, H, band, drop(l, 1));
      be.linear_backward(dres, D.qkv_w, D.qkv_b, a.dqkv, x, Wl.qkv_w, n, C, 3 * C, /*accumulate=*/true);
      lora_backward(l, LoraTarget::Attn, dres, a.dqkv, x);
    }
  }
  if (lowest >= 0) return;  // the embeddings are frozen: nothing below needs a gradient
  // embeddings: encoded = drop(wte[ids] + wpe[pos])
  be.dropout_backward(dres, dres, N * C, drop(-1, 0));
  be.embedding_backward(G.wte, G.wpe, dres, a.inputs, a.host_inputs.data(), B, T, C);
}

// ---- the gradient mask -------------------------------------------------------------------------------

// The block a tensor belongs to: -1 for the embeddings, n_layer for ln_f and lm_head.
int tensor_layer(const ParamInfo& p, int n_layer) {
  if (p.name.starts_with("h.")) return std::atoi(p.name.c_str() + 2);
  if (p.name.starts_with("wte.") || p.name.starts_with("wpe.")) return -1;
  return n_layer;
}

void GPT::set_requires_grad(const std::vector<char>& mask) {
  if (mask.size() != layout_.size())
    fail("set_requires_grad: {} flags for the model's {} tensors", mask.size(), layout_.size());
  bool all = true, embeddings = false;
  for (size_t i = 0; i < layout_.size(); i++) {
    all &= mask[i] != 0;
    embeddings |= mask[i] != 0 && tensor_layer(layout_[i], cfg_.n_layer) < 0;
  }
  if (embeddings && !all) fail("set_requires_grad: the embeddings can train only with every other tensor");
  requires_grad_ = mask;
  rebind_grads();
}
bool GPT::any_requires_grad() const {
  for (char t : requires_grad_)
    if (t) return true;
  return false;
}
bool GPT::all_require_grad() const {
  for (char t : requires_grad_)
    if (!t) return false;
  return true;
}

void GPT::rebind_grads() {
  std::vector<ParamInfo> live;
  for (size_t i = 0; i < layout_.size(); i++)
    if (requires_grad_[i]) live.push_back(layout_[i]);
  // With no gradient wanted (only LoRA adapters train) the gradient arena is never needed: all pointers are null.
  if (!live.empty() && grads_.empty()) return;  // grads() binds when it allocates
  gt_ = bind_tensors(cfg_, live, static_cast<float*>(grads_.get()));
  if (!all_require_grad() && sink_.empty()) sink_ = BackendBuffer(*be_, cfg_.n_embd * sizeof(float));
}

int GPT::lowest_grad_layer() const {
  int lowest = lora_ ? lora_->lowest_layer() : cfg_.n_layer + 1;
  if (lora_ && lowest >= cfg_.n_layer) lowest = cfg_.n_layer + 1;  // adapters on no block
  for (size_t i = 0; i < layout_.size(); i++)
    if (requires_grad_[i]) lowest = std::min(lowest, tensor_layer(layout_[i], cfg_.n_layer));
  return lowest;
}

}  // namespace gpt
