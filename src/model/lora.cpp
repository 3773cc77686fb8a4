#include "model/lora.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "model/gpt.h"

namespace gpt {

const char* lora_target_module(LoraTarget t) {
  switch (t) {
    case LoraTarget::Attn:
      return "attn.c_attn";
    case LoraTarget::AttnProj:
      return "attn.c_proj";
    case LoraTarget::Fc:
      return "mlp.c_fc";
    case LoraTarget::FcProj:
      return "mlp.c_proj";
  }
  return "?";
}

std::array<bool, kLoraTargets> lora_target_mask(const std::vector<std::string>& targets) {
  std::array<bool, kLoraTargets> m{};
  for (const auto& t : targets) {
    if (t == "c_attn" || t == "attn.c_attn")
      m[0] = true;
    else if (t == "c_proj")
      m[1] = m[3] = true;
    else if (t == "attn.c_proj")
      m[1] = true;
    else if (t == "c_fc" || t == "mlp.c_fc")
      m[2] = true;
    else if (t == "mlp.c_proj")
      m[3] = true;
    else
      fail("unknown LoRA target \"{}\" (GPT-2 module names: c_attn, c_proj, c_fc, attn.c_proj, mlp.c_proj)",
           t);
  }
  if (std::none_of(m.begin(), m.end(), [](bool b) { return b; }))
    fail("LoRA needs at least one target module");
  return m;
}

// in, out of a projection (Conv1D [in, out]).
static std::pair<int64_t, int64_t> projection_shape(const ModelConfig& c, LoraTarget t) {
  const int64_t C = c.n_embd;
  switch (t) {
    case LoraTarget::Attn:
      return {C, 3 * C};
    case LoraTarget::AttnProj:
      return {C, C};
    case LoraTarget::Fc:
      return {C, 4 * C};
    case LoraTarget::FcProj:
      return {4 * C, C};
  }
  return {0, 0};
}

std::vector<LoraTensor> lora_layout(const ModelConfig& model, const LoraConfig& cfg) {
  if (cfg.r < 1) fail("LoRA rank must be at least 1, got {}", cfg.r);
  if (!(cfg.dropout >= 0.0f && cfg.dropout < 1.0f))
    fail("LoRA dropout must be in [0, 1), got {}", cfg.dropout);
  if (!std::isfinite(cfg.alpha)) fail("LoRA alpha must be finite");
  const auto mask = lora_target_mask(cfg.targets);
  std::vector<LoraTensor> out;
  size_t offset = 0;
  for (int l = 0; l < model.n_layer; l++)
    for (int t = 0; t < kLoraTargets; t++) {
      if (!mask[t]) continue;
      const auto target = static_cast<LoraTarget>(t);
      const auto [in, outd] = projection_shape(model, target);
      const std::string prefix =
          fmt::format("base_model.model.transformer.h.{}.{}.", l, lora_target_module(target));
      for (bool is_b : {false, true}) {
        LoraTensor x;
        x.name = prefix + (is_b ? "lora_B.weight" : "lora_A.weight");
        x.layer = l;
        x.target = target;
        x.is_b = is_b;
        x.shape = is_b ? std::vector<int64_t>{outd, cfg.r} : std::vector<int64_t>{cfg.r, in};
        x.offset = offset;
        x.numel = static_cast<size_t>(x.shape[0] * x.shape[1]);
        offset += x.numel;
        out.push_back(std::move(x));
      }
    }
  return out;
}

LoraAdapters::LoraAdapters(const ModelConfig& model, LoraConfig cfg, Backend& backend)
    : model_(model), cfg_(std::move(cfg)), be_(&backend) {
  layout_ = lora_layout(model_, cfg_);
  n_ = layout_.empty() ? 0 : layout_.back().offset + layout_.back().numel;
  if (n_) {
    params_ = BackendBuffer(backend, n_ * sizeof(float));  // zeroed
    grads_ = BackendBuffer(backend, n_ * sizeof(float));
  }
  bind();
}

std::vector<float> LoraAdapters::host_params() const {
  std::vector<float> h(n_);
  if (n_) be_->to_host(h.data(), params(), n_ * sizeof(float));
  return h;
}
std::vector<float> LoraAdapters::host_grads() const {
  std::vector<float> h(n_);
  if (n_) be_->to_host(h.data(), grads(), n_ * sizeof(float));
  return h;
}
void LoraAdapters::set_params(const float* host) {
  if (n_) be_->to_device(params(), host, n_ * sizeof(float));
}

void LoraAdapters::bind() {
  slots_.assign(static_cast<size_t>(model_.n_layer) * kLoraTargets, Slot{});
  for (const auto& t : layout_) {
    Slot& s = mutable_slot(t.layer, t.target);
    const auto [in, out] = projection_shape(model_, t.target);
    s.in = static_cast<int>(in);
    s.out = static_cast<int>(out);
    (t.is_b ? s.b : s.a) = params() + t.offset;
    (t.is_b ? s.db : s.da) = grads() + t.offset;
  }
}

void LoraAdapters::init(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> h(n_);
  for (const auto& t : layout_) {
    float* x = h.data() + t.offset;
    if (t.is_b) {
      std::fill(x, x + t.numel, 0.0f);
    } else {
      const float bound = 1.0f / std::sqrt(static_cast<float>(t.shape[1]));
      std::uniform_real_distribution<float> u(-bound, bound);
      for (size_t i = 0; i < t.numel; i++) x[i] = u(rng);
    }
  }
  set_params(h.data());
}

const LoraTensor* LoraAdapters::find(std::string_view name) const {
  for (const auto& t : layout_)
    if (t.name == name) return &t;
  return nullptr;
}

void LoraAdapters::zero_grad() {
  if (n_) be_->fill_zero(grads(), n_ * sizeof(float));
}

int LoraAdapters::lowest_layer() const { return layout_.empty() ? model_.n_layer : layout_.front().layer; }

void merge_lora(GPT& model, const LoraAdapters& adapters) {
  const ModelConfig& mc = model.config();
  if (adapters.model_config().n_layer != mc.n_layer || adapters.model_config().n_embd != mc.n_embd)
    fail("merge_lora: the adapters are for another model shape");
  // On the host, where the model's fp32 weights are kept (the next forward uploads them).
  const std::vector<float> h = adapters.host_params();
  const std::vector<LoraTensor>& layout = adapters.layout();
  for (size_t k = 0; k + 1 < layout.size(); k++) {
    const LoraTensor& a = layout[k];  // lora_A, then its lora_B
    if (a.is_b) continue;
    const float* A = h.data() + a.offset;
    const float* B = h.data() + layout[k + 1].offset;
    const int r = adapters.config().r, in = static_cast<int>(a.shape[1]);
    float* W = model.param(fmt::format("h.{}.{}.weight", a.layer, lora_target_module(a.target)));
    const int out = static_cast<int>(
        model.find(fmt::format("h.{}.{}.weight", a.layer, lora_target_module(a.target)))->shape[1]);
    // W[in,out] += scale * A[r,in]^T @ B[out,r]^T
    ops::gemm(true, true, in, out, r, adapters.scale(), A, in, B, r, 1.0f, W, out);
  }
}

}  // namespace gpt
