// The GPT forward and backward passes, op by op. Pre-LN (GPT-2/3) block:
//   x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))        ... then ln_f
// Post-LN (GPT-1) block:
//   x = ln_1(x + drop(attn(x)));  x = ln_2(x + drop(mlp(x)))        ... no ln_f
// where attn = c_proj(attention(c_attn(.))) and mlp = c_proj(gelu(c_fc(.))).
#include "model/gpt.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/parallel.h"
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

// ---- activations ---------------------------------------------------------------------------------

// Everything the forward pass writes, carved out of one arena for a given (B, T, training).
// In training each layer keeps its own tensors for the backward pass; in inference all layers
// share one set (each layer reads only its input, which the previous layer left in place).
struct LayerActs {
  float *ln1, *ln1_mean, *ln1_rstd;  // [N,C], [N], [N]
  float* qkv;                        // [N,3C]
  float* att;                        // [B,H,T,T] (training only)
  float* atty;                       // [N,C] attention output before c_proj
  float* res2;                       // [N,C] after the attention residual
  float *ln2, *ln2_mean, *ln2_rstd;  // [N,C], [N], [N]
  float* fch;                        // [N,4C] before GELU
  float* fch_gelu;                   // [N,4C]
  float* res3;                       // [N,C] after the MLP residual (pre-LN block output)
};

struct GPT::Activations {
  int B = 0, T = 0, threads = 0;
  bool training = false;
  FloatArena arena;
  float* encoded = nullptr;  // [N,C] embeddings (after dropout)
  std::vector<LayerActs> layers;
  float* proj = nullptr;  // [N,C] scratch: a c_proj output before its residual add
  float *lnf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr;
  float* logits = nullptr;   // [N,V]
  float* losses = nullptr;   // [N]
  float* lse = nullptr;      // [N]
  float* scratch = nullptr;  // [threads, T] attention rows
  // backward buffers (training only)
  float *dres = nullptr, *dbuf = nullptr, *dbuf2 = nullptr, *dqkv = nullptr, *dfch = nullptr;
  std::vector<TokenId> inputs;
  std::vector<int32_t> targets;
  bool have_targets = false;
  uint64_t dropout_seed = 0;
  float dropout_p = 0.0f;  // the dropout the last forward applied, for its backward
};

void GPT::plan(int B, int T, bool training) {
  if (!acts_) acts_ = new Activations();
  Activations& a = *acts_;
  // The attention scratch depends on the thread count, so a change of threads re-plans too.
  if (a.B == B && a.T == T && a.training == training && a.threads == num_threads() && !a.arena.empty())
    return;
  const size_t N = static_cast<size_t>(B) * T, C = cfg_.n_embd, V = cfg_.vocab_size, H = cfg_.n_head;
  const size_t layer_sets = training ? cfg_.n_layer : 1;
  const size_t att = training ? static_cast<size_t>(B) * H * T * T : 0;
  const size_t per_layer = N * C * 5 + N * 4 + N * 3 * C + att + N * 8 * C;
  size_t total = N * C + layer_sets * per_layer + N * C + N * C + 2 * N + N * V + 2 * N +
                 ops::attention_scratch_floats(T);
  if (training) total += N * C * 3 + N * 3 * C + N * 4 * C;
  a.arena = FloatArena();  // release the old plan before allocating the new one
  a.arena.resize(total);
  float* p = a.arena.data();
  auto take = [&](size_t n) {
    float* r = p;
    p += n;
    return r;
  };
  a.encoded = take(N * C);
  a.layers.assign(cfg_.n_layer, {});
  for (size_t l = 0; l < layer_sets; l++) {
    LayerActs& L = a.layers[l];
    L.ln1 = take(N * C);
    L.ln1_mean = take(N);
    L.ln1_rstd = take(N);
    L.qkv = take(N * 3 * C);
    L.att = training ? take(att) : nullptr;
    L.atty = take(N * C);
    L.res2 = take(N * C);
    L.ln2 = take(N * C);
    L.ln2_mean = take(N);
    L.ln2_rstd = take(N);
    L.fch = take(N * 4 * C);
    L.fch_gelu = take(N * 4 * C);
    L.res3 = take(N * C);
  }
  for (size_t l = layer_sets; l < a.layers.size(); l++) a.layers[l] = a.layers[0];
  a.proj = take(N * C);
  a.lnf = take(N * C);
  a.lnf_mean = take(N);
  a.lnf_rstd = take(N);
  a.logits = take(N * V);
  a.losses = take(N);
  a.lse = take(N);
  a.scratch = take(ops::attention_scratch_floats(T));
  if (training) {
    a.dres = take(N * C);
    a.dbuf = take(N * C);
    a.dbuf2 = take(N * C);
    a.dqkv = take(N * 3 * C);
    a.dfch = take(N * 4 * C);
  }
  // Every float of the plan is accounted for: a mismatch here is a bug in the sizes above.
  if (p != a.arena.data() + total)
    fail("internal error: activation plan uses {} floats of {}", p - a.arena.data(), total);
  a.B = B;
  a.T = T;
  a.training = training;
  a.threads = num_threads();
}

size_t GPT::activation_bytes() const { return acts_ ? acts_->arena.bytes() : 0; }

// ---- construction ----------------------------------------------------------------------------------

GPT::GPT(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  layout_ = parameter_layout(cfg_);
  num_params_ = layout_.empty() ? 0 : layout_.back().offset + layout_.back().numel;
  params_.resize(num_params_);
  w_ = bind_tensors(cfg_, layout_, params_.data());
}

GPT::GPT(GPT&& o) noexcept
    : cfg_(std::move(o.cfg_)),
      layout_(std::move(o.layout_)),
      num_params_(o.num_params_),
      params_(std::move(o.params_)),
      grads_(std::move(o.grads_)),
      w_(std::move(o.w_)),
      g_(std::move(o.g_)),
      acts_(std::exchange(o.acts_, nullptr)),
      scored_(o.scored_) {}

GPT& GPT::operator=(GPT&& o) noexcept {
  if (this != &o) {
    delete acts_;
    cfg_ = std::move(o.cfg_);
    layout_ = std::move(o.layout_);
    num_params_ = o.num_params_;
    params_ = std::move(o.params_);
    grads_ = std::move(o.grads_);
    w_ = std::move(o.w_);
    g_ = std::move(o.g_);
    acts_ = std::exchange(o.acts_, nullptr);
    scored_ = o.scored_;
  }
  return *this;
}

GPT::~GPT() { delete acts_; }

const ParamInfo* GPT::find(std::string_view name) const {
  for (const auto& p : layout_)
    if (p.name == name) return &p;
  return nullptr;
}
float* GPT::param(std::string_view name) {
  const ParamInfo* p = find(name);
  if (!p) fail("the model has no parameter \"{}\"", name);
  return params_.data() + p->offset;
}
const float* GPT::param(std::string_view name) const { return const_cast<GPT*>(this)->param(name); }

float* GPT::grads() {
  if (grads_.empty()) {
    grads_.resize(num_params_);
    g_ = bind_tensors(cfg_, layout_, grads_.data());
  }
  return grads_.data();
}
void GPT::zero_grad() {
  if (grads_.empty())
    grads();
  else
    grads_.zero();
}

void GPT::set_dropout(float p) {
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout must be in [0, 1), got {}", p);
  cfg_.dropout = p;
}

void GPT::init_gpt2(uint64_t seed) {
  std::mt19937_64 rng(seed);
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

// ---- forward ---------------------------------------------------------------------------------------

const float* GPT::logits() const { return acts_ ? acts_->logits : nullptr; }
const float* GPT::position_losses() const { return acts_ ? acts_->losses : nullptr; }

float GPT::forward(const TokenId* inputs, const int32_t* targets, int B, int T, bool training,
                   uint64_t dropout_seed) {
  if (B < 1 || T < 1) fail("forward: empty batch (B = {}, T = {})", B, T);
  if (T > cfg_.n_ctx) fail("sequence of {} tokens is longer than the model's context of {}", T, cfg_.n_ctx);
  const size_t N = static_cast<size_t>(B) * T;
  for (size_t i = 0; i < N; i++)
    if (inputs[i] >= static_cast<TokenId>(cfg_.vocab_size))
      fail("token id {} is out of range for a vocabulary of {}", inputs[i], cfg_.vocab_size);
  if (targets)
    for (size_t i = 0; i < N; i++)
      if (targets[i] != kIgnoreIndex && (targets[i] < 0 || targets[i] >= cfg_.vocab_size))
        fail("target id {} is out of range for a vocabulary of {}", targets[i], cfg_.vocab_size);

  plan(B, T, training);
  Activations& a = *acts_;
  a.inputs.assign(inputs, inputs + N);
  a.have_targets = targets != nullptr;
  if (targets) a.targets.assign(targets, targets + N);
  a.dropout_seed = dropout_seed;
  a.dropout_p = training ? cfg_.dropout : 0.0f;

  const int C = cfg_.n_embd, H = cfg_.n_head, V = cfg_.vocab_size;
  const float p = training ? cfg_.dropout : 0.0f;
  auto drop = [&](int layer, int site) {
    return ops::Dropout{p, ops::dropout_seed(dropout_seed, layer, site)};
  };
  const int n = static_cast<int>(N);
  const bool pre = cfg_.ln == LnPlacement::Pre;

  // token + position embeddings
  ops::embedding_forward(a.encoded, inputs, w_.wte, w_.wpe, B, T, C);
  ops::dropout_forward(a.encoded, N * C, drop(-1, 0));
  const float* x = a.encoded;  // the input of the next block

  for (int l = 0; l < cfg_.n_layer; l++) {
    const LayerTensors& W = w_.layers[l];
    LayerActs& L = a.layers[l];
    const int band = cfg_.banded(l) ? cfg_.band : 0;
    // attention sub-block
    const float* attn_in = x;
    if (pre) {
      ops::layernorm_forward(L.ln1, L.ln1_mean, L.ln1_rstd, x, W.ln1_w, W.ln1_b, n, C, cfg_.ln_eps);
      attn_in = L.ln1;
    }
    ops::linear_forward(L.qkv, attn_in, W.qkv_w, W.qkv_b, n, C, 3 * C);
    ops::attention_forward(L.atty, L.att, a.scratch, L.qkv, B, T, C, H, band, drop(l, 1));
    ops::linear_forward(a.proj, L.atty, W.attn_proj_w, W.attn_proj_b, n, C, C);
    ops::residual_forward(L.res2, x, a.proj, N * C, drop(l, 2));
    // MLP sub-block
    const float* mlp_in;
    if (pre) {
      ops::layernorm_forward(L.ln2, L.ln2_mean, L.ln2_rstd, L.res2, W.ln2_w, W.ln2_b, n, C, cfg_.ln_eps);
      mlp_in = L.ln2;
    } else {
      ops::layernorm_forward(L.ln1, L.ln1_mean, L.ln1_rstd, L.res2, W.ln1_w, W.ln1_b, n, C, cfg_.ln_eps);
      mlp_in = L.ln1;
    }
    ops::linear_forward(L.fch, mlp_in, W.fc_w, W.fc_b, n, C, 4 * C);
    ops::gelu_forward(L.fch_gelu, L.fch, N * 4 * C);
    ops::linear_forward(a.proj, L.fch_gelu, W.fc_proj_w, W.fc_proj_b, n, 4 * C, C);
    ops::residual_forward(L.res3, mlp_in == L.ln1 ? L.ln1 : L.res2, a.proj, N * C, drop(l, 3));
    if (pre) {
      x = L.res3;
    } else {
      ops::layernorm_forward(L.ln2, L.ln2_mean, L.ln2_rstd, L.res3, W.ln2_w, W.ln2_b, n, C, cfg_.ln_eps);
      x = L.ln2;
    }
  }

  const float* head_in = x;
  if (cfg_.final_ln()) {
    ops::layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, x, w_.lnf_w, w_.lnf_b, n, C, cfg_.ln_eps);
    head_in = a.lnf;
  } else if (x != a.lnf) {
    std::memcpy(a.lnf, x, N * C * sizeof(float));  // the head's input, kept for its backward
    head_in = a.lnf;
  }
  ops::lm_head_forward(a.logits, head_in, w_.lm_head, n, C, V);

  scored_ = 0;
  if (!targets) return std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i < N; i++) scored_ += targets[i] != kIgnoreIndex;
  const double total = ops::cross_entropy_forward(a.losses, a.lse, a.logits, targets, n, V);
  return scored_ ? static_cast<float>(total / static_cast<double>(scored_)) : 0.0f;
}

// ---- backward --------------------------------------------------------------------------------------

void GPT::backward(float grad_scale) {
  if (!acts_ || !acts_->training || !acts_->have_targets)
    fail("backward() needs a forward pass with training = true and targets");
  Activations& a = *acts_;
  grads();
  const ModelTensors& G = g_;
  const int B = a.B, T = a.T, C = cfg_.n_embd, H = cfg_.n_head, V = cfg_.vocab_size;
  const size_t N = static_cast<size_t>(B) * T;
  const int n = static_cast<int>(N);
  const bool pre = cfg_.ln == LnPlacement::Pre;
  auto drop = [&](int layer, int site) {
    return ops::Dropout{a.dropout_p, ops::dropout_seed(a.dropout_seed, layer, site)};
  };
  if (scored_ == 0) return;  // nothing scored: the loss is constant

  // loss -> logits -> head input
  ops::cross_entropy_backward(a.logits, a.lse, a.targets.data(), n, V,
                              grad_scale / static_cast<float>(scored_));
  float* dres = a.dres;  // gradient w.r.t. the current block's output, then its input
  if (cfg_.final_ln()) {
    ops::lm_head_backward(a.dbuf, G.lm_head, a.logits, a.lnf, w_.lm_head, n, C, V);
    const float* x = cfg_.n_layer > 0 ? a.layers[cfg_.n_layer - 1].res3 : a.encoded;
    std::memset(dres, 0, N * C * sizeof(float));
    ops::layernorm_backward(dres, G.lnf_w, G.lnf_b, a.dbuf, x, w_.lnf_w, a.lnf_mean, a.lnf_rstd, n, C);
  } else {
    ops::lm_head_backward(dres, G.lm_head, a.logits, a.lnf, w_.lm_head, n, C, V);
  }

  for (int l = cfg_.n_layer - 1; l >= 0; l--) {
    const LayerTensors& W = w_.layers[l];
    const LayerTensors& D = G.layers[l];
    LayerActs& L = a.layers[l];
    const int band = cfg_.banded(l) ? cfg_.band : 0;
    const float* x = l == 0 ? a.encoded : (pre ? a.layers[l - 1].res3 : a.layers[l - 1].ln2);
    if (pre) {
      // dres = d(res3). MLP branch: res3 = res2 + drop(c_proj(gelu(c_fc(ln_2(res2)))))
      ops::dropout_backward(a.dbuf2, dres, N * C, drop(l, 3));
      ops::linear_backward(a.dfch, D.fc_proj_w, D.fc_proj_b, a.dbuf2, L.fch_gelu, W.fc_proj_w, n, 4 * C, C);
      ops::gelu_backward(a.dfch, L.fch, a.dfch, N * 4 * C);
      ops::linear_backward(a.dbuf, D.fc_w, D.fc_b, a.dfch, L.ln2, W.fc_w, n, C, 4 * C);
      ops::layernorm_backward(dres, D.ln2_w, D.ln2_b, a.dbuf, L.res2, W.ln2_w, L.ln2_mean, L.ln2_rstd, n, C);
      // dres = d(res2). attention branch: res2 = x + drop(c_proj(attention(c_attn(ln_1(x)))))
      ops::dropout_backward(a.dbuf2, dres, N * C, drop(l, 2));
      ops::linear_backward(a.dbuf, D.attn_proj_w, D.attn_proj_b, a.dbuf2, L.atty, W.attn_proj_w, n, C, C);
      ops::attention_backward(a.dqkv, a.scratch, a.dbuf, L.qkv, L.att, B, T, C, H, band, drop(l, 1));
      ops::linear_backward(a.dbuf, D.qkv_w, D.qkv_b, a.dqkv, L.ln1, W.qkv_w, n, C, 3 * C);
      ops::layernorm_backward(dres, D.ln1_w, D.ln1_b, a.dbuf, x, W.ln1_w, L.ln1_mean, L.ln1_rstd, n, C);
      // dres = d(x)
    } else {
      // dres = d(ln_2 output). ln2 = LN(res3), res3 = ln1 + drop(mlp(ln1)), ln1 = LN(res2),
      // res2 = x + drop(attn(x)).
      std::memset(a.dbuf, 0, N * C * sizeof(float));
      ops::layernorm_backward(a.dbuf, D.ln2_w, D.ln2_b, dres, L.res3, W.ln2_w, L.ln2_mean, L.ln2_rstd, n, C);
      // a.dbuf = d(res3); d(ln1) = d(res3) + MLP backward, accumulated into dres
      std::memcpy(dres, a.dbuf, N * C * sizeof(float));
      ops::dropout_backward(a.dbuf2, a.dbuf, N * C, drop(l, 3));
      ops::linear_backward(a.dfch, D.fc_proj_w, D.fc_proj_b, a.dbuf2, L.fch_gelu, W.fc_proj_w, n, 4 * C, C);
      ops::gelu_backward(a.dfch, L.fch, a.dfch, N * 4 * C);
      ops::linear_backward(dres, D.fc_w, D.fc_b, a.dfch, L.ln1, W.fc_w, n, C, 4 * C, /*accumulate=*/true);
      // dres = d(ln1) -> a.dbuf = d(res2)
      std::memset(a.dbuf, 0, N * C * sizeof(float));
      ops::layernorm_backward(a.dbuf, D.ln1_w, D.ln1_b, dres, L.res2, W.ln1_w, L.ln1_mean, L.ln1_rstd, n, C);
      // d(x) = d(res2) + attention backward
      std::memcpy(dres, a.dbuf, N * C * sizeof(float));
      ops::dropout_backward(a.dbuf2, a.dbuf, N * C, drop(l, 2));
      ops::linear_backward(a.dbuf, D.attn_proj_w, D.attn_proj_b, a.dbuf2, L.atty, W.attn_proj_w, n, C, C);
      ops::attention_backward(a.dqkv, a.scratch, a.dbuf, L.qkv, L.att, B, T, C, H, band, drop(l, 1));
      ops::linear_backward(dres, D.qkv_w, D.qkv_b, a.dqkv, x, W.qkv_w, n, C, 3 * C, /*accumulate=*/true);
    }
  }
  // embeddings: encoded = drop(wte[ids] + wpe[pos])
  ops::dropout_backward(dres, dres, N * C, drop(-1, 0));
  ops::embedding_backward(G.wte, G.wpe, dres, a.inputs.data(), B, T, C);
}

}  // namespace gpt
