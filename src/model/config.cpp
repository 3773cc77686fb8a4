#include "model/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/memory.h"
#include "core/progress.h"  // format_count

namespace gpt {

const char* to_string(LnPlacement p) { return p == LnPlacement::Pre ? "pre" : "post"; }
const char* to_string(AttentionKind a) { return a == AttentionKind::Dense ? "dense" : "alternating_banded"; }

void ModelConfig::validate() const {
  auto positive = [](const char* name, long v, long max) {
    if (v < 1 || v > max) fail("model config: {} must be in [1, {}], got {}", name, max, v);
  };
  positive("n_layer", n_layer, 4096);
  positive("n_head", n_head, 4096);
  positive("n_embd", n_embd, 1 << 16);
  positive("context (n_positions)", n_ctx, 1 << 20);
  positive("vocab_size", vocab_size, 1 << 24);
  if (n_embd % n_head != 0)
    fail("model config: n_embd ({}) must be a multiple of n_head ({})", n_embd, n_head);
  if (attention == AttentionKind::AlternatingBanded && band < 1)
    fail("model config: band width must be >= 1, got {}", band);
  if (!(dropout >= 0.0f && dropout < 1.0f)) fail("model config: dropout must be in [0, 1), got {}", dropout);
  if (!(ln_eps > 0.0f && ln_eps < 1.0f))
    fail("model config: layer_norm_epsilon must be in (0, 1), got {}", ln_eps);
  // Parameters must fit comfortably in memory arithmetic (and in a size_t count).
  if (num_parameters() > (uint64_t{1} << 40))
    fail("model config: {} parameters ({} of fp32 weights alone) is more than the {} gpt.cpp supports",
         format_count(num_parameters()), format_bytes(4 * num_parameters()), format_count(uint64_t{1} << 40));
}

uint64_t ModelConfig::num_parameters() const {
  const uint64_t C = n_embd, V = vocab_size, L = n_layer, T = n_ctx, b = bias ? 1 : 0;
  const uint64_t layer_norm = C + C * b;
  const uint64_t per_layer = 2 * layer_norm           // ln_1, ln_2
                             + 3 * C * C + 3 * C * b  // attn.c_attn
                             + C * C + C * b          // attn.c_proj
                             + 4 * C * C + 4 * C * b  // mlp.c_fc
                             + 4 * C * C + C * b;     // mlp.c_proj
  uint64_t n = V * C + T * C + L * per_layer;
  if (final_ln()) n += layer_norm;
  if (!tied_head) n += V * C;
  return n;
}

uint64_t ModelConfig::num_matmul_parameters() const {
  const uint64_t C = n_embd, V = vocab_size, L = n_layer;
  return L * 12 * C * C + V * C;
}

static double attention_span(const ModelConfig& c, int T) {
  double sum = 0;  // mean key span per layer, counted like the usual 12 L C T estimate
  for (int l = 0; l < c.n_layer; l++) sum += c.banded(l) ? std::min(T, c.band) : T;
  return sum;
}

double ModelConfig::mfu_flops_per_token(int T, bool train) const {
  const double N = static_cast<double>(num_parameters()) - static_cast<double>(n_ctx) * n_embd;
  const double per_token = 6.0 * N + 12.0 * n_layer * static_cast<double>(T) * n_embd;
  return train ? per_token : per_token / 3.0;
}

double ModelConfig::forward_flops_per_token(int T) const {
  return 2.0 * static_cast<double>(num_matmul_parameters()) + 4.0 * n_embd * attention_span(*this, T);
}
double ModelConfig::train_flops_per_token(int T) const { return 3.0 * forward_flops_per_token(T); }

std::string ModelConfig::describe() const {
  std::string s;
  s += fmt::format("preset             {}\n", preset);
  s += fmt::format("n_layer            {}\n", n_layer);
  s += fmt::format("n_head             {}\n", n_head);
  s += fmt::format("n_embd             {}\n", n_embd);
  s += fmt::format("head_dim           {}\n", n_head > 0 ? n_embd / n_head : 0);
  s += fmt::format("context            {}\n", n_ctx);
  s += fmt::format("vocab_size         {}\n", vocab_size);
  s += fmt::format("layer_norm         {}{}\n", to_string(ln),
                   final_ln() ? " (+ final LayerNorm)" : " (no final LayerNorm)");
  if (attention == AttentionKind::Dense)
    s += "attention          dense causal\n";
  else
    s += fmt::format("attention          alternating: even layers dense, odd layers banded (W = {})\n", band);
  s += fmt::format("dropout            {}\n", dropout);
  s += fmt::format("bias               {}\n", bias ? "yes" : "no");
  s += fmt::format("lm_head            {}\n", tied_head ? "tied to wte" : "separate");
  s += fmt::format("layer_norm_eps     {}\n", ln_eps);
  return s;
}

namespace {
ModelConfig make(const char* name, int L, int H, int C, int T, int V, LnPlacement ln, AttentionKind a,
                 float dropout) {
  ModelConfig c;
  c.preset = name;
  c.n_layer = L;
  c.n_head = H;
  c.n_embd = C;
  c.n_ctx = T;
  c.vocab_size = V;
  c.ln = ln;
  c.attention = a;
  c.dropout = dropout;
  return c;
}
const std::vector<ModelConfig>& presets() {
  using enum LnPlacement;
  using enum AttentionKind;
  // GPT-2 shapes as published with the checkpoints (dropout 0.1 as in their configs); GPT-1 as in
  // its paper (BPE vocabulary of 40,478, context 512); GPT-3 from Table 2.1 of its paper, except
  // that GPT-3 XL's table row (24 heads of 128 = 3072 != d_model 2048) cannot be built as printed:
  // it keeps d_head = 128 and so has 16 heads.
  static const std::vector<ModelConfig> all = {
      make("gpt2", 12, 12, 768, 1024, 50257, Pre, Dense, 0.1f),
      make("gpt2-medium", 24, 16, 1024, 1024, 50257, Pre, Dense, 0.1f),
      make("gpt2-large", 36, 20, 1280, 1024, 50257, Pre, Dense, 0.1f),
      make("gpt2-xl", 48, 25, 1600, 1024, 50257, Pre, Dense, 0.1f),
      make("gpt1", 12, 12, 768, 512, 40478, Post, Dense, 0.1f),
      make("gpt3-small", 12, 12, 768, 2048, 50257, Pre, AlternatingBanded, 0.0f),
      make("gpt3-medium", 24, 16, 1024, 2048, 50257, Pre, AlternatingBanded, 0.0f),
      make("gpt3-large", 24, 16, 1536, 2048, 50257, Pre, AlternatingBanded, 0.0f),
      make("gpt3-xl", 24, 16, 2048, 2048, 50257, Pre, AlternatingBanded, 0.0f),
  };
  return all;
}
}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& c : presets()) v.push_back(c.preset);
    return v;
  }();
  return names;
}

ModelConfig preset_config(const std::string& name) {
  for (const auto& c : presets())
    if (c.preset == name) return c;
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown preset \"{}\" (known: {})", name, known);
}

}  // namespace gpt
