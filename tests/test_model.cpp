// The whole network: configurations and parameter counts, finite-difference gradients of the
// mean loss for every parameter tensor in each architecture variant, and structural properties
// (causality, batch independence, inference = training without dropout).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "eval/evaluate.h"
#include "grad_check.h"
#include "model/gpt.h"
#include "model_test_util.h"

namespace gpt {
namespace {

using test::Batch;
using test::randomize;

TEST(Config, PresetParameterCounts) {
  // The published figures for the GPT-2 family (tied head).
  EXPECT_EQ(preset_config("gpt2").num_parameters(), 124'439'808u);
  EXPECT_EQ(preset_config("gpt2-medium").num_parameters(), 354'823'168u);
  EXPECT_EQ(preset_config("gpt2-large").num_parameters(), 774'030'080u);
  EXPECT_EQ(preset_config("gpt2-xl").num_parameters(), 1'557'611'200u);
  // GPT-1: 12 x 768, context 512, vocabulary 40478, no final LayerNorm.
  EXPECT_EQ(preset_config("gpt1").num_parameters(), 116'534'784u);
  EXPECT_EQ(preset_config("gpt2").num_matmul_parameters(), 123'532'032u);
  // MFU's count (PaLM, llm.c): 6 N + 12 L T C with N = 124,439,808 - 1024 * 768; a third forward only.
  EXPECT_EQ(preset_config("gpt2").mfu_flops_per_token(1024, true), 6.0 * 123'653'376 + 12.0 * 12 * 1024 * 768);
  EXPECT_EQ(preset_config("gpt2").mfu_flops_per_token(1024, false), (6.0 * 123'653'376 + 12.0 * 12 * 1024 * 768) / 3);
  for (const auto& name : preset_names()) {
    ModelConfig c = preset_config(name);
    auto layout = parameter_layout(c);
    size_t total = 0;
    for (const auto& p : layout) {
      EXPECT_EQ(p.offset, total) << name << " " << p.name;
      total += p.numel;
    }
    EXPECT_EQ(total, c.num_parameters()) << name;
  }
  EXPECT_THROW(preset_config("gpt5"), Error);
}

TEST(Config, GPT3PresetsFollowThePaper) {
  struct Row {
    const char* name;
    int L, C, H;
    double params_m;
  };
  for (Row r : {Row{"gpt3-small", 12, 768, 12, 125}, Row{"gpt3-medium", 24, 1024, 16, 350},
                Row{"gpt3-large", 24, 1536, 16, 760}, Row{"gpt3-xl", 24, 2048, 16, 1300}}) {
    ModelConfig c = preset_config(r.name);
    EXPECT_EQ(c.n_layer, r.L);
    EXPECT_EQ(c.n_embd, r.C);
    EXPECT_EQ(c.n_head, r.H);
    EXPECT_EQ(c.n_ctx, 2048);
    EXPECT_FALSE(c.banded(0));
    EXPECT_TRUE(c.banded(1));
    // the paper's rounded sizes, within 10 %
    EXPECT_NEAR(static_cast<double>(c.num_parameters()) / 1e6, r.params_m, r.params_m * 0.1) << r.name;
  }
}

TEST(Config, ValidationRejectsImpossibleShapes) {
  ModelConfig c;
  c.n_head = 5;
  EXPECT_THROW(c.validate(), Error);  // 768 % 5 != 0
  c = ModelConfig{};
  c.n_layer = 0;
  EXPECT_THROW(c.validate(), Error);
  c = ModelConfig{};
  c.dropout = 1.0f;
  EXPECT_THROW(c.validate(), Error);
  c = ModelConfig{};
  c.vocab_size = -3;
  EXPECT_THROW(c.validate(), Error);
}

ModelConfig tiny(LnPlacement ln = LnPlacement::Pre, AttentionKind att = AttentionKind::Dense,
                 bool bias = true, bool tied = true, float dropout = 0.0f) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.n_ctx = 8;
  c.vocab_size = 11;
  c.ln = ln;
  c.attention = att;
  c.band = 2;
  c.bias = bias;
  c.tied_head = tied;
  c.dropout = dropout;
  return c;
}

void check_model_gradients(const ModelConfig& cfg) {
  GPT m(cfg);
  randomize(m, 42);
  Batch b;
  const uint64_t seed = 99;
  m.zero_grad();
  const float loss = m.forward(b.x.data(), b.y.data(), b.B, b.T, true, seed);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_EQ(m.scored_targets(), 11u);
  m.backward();
  std::vector<float> grads(m.grads(), m.grads() + m.num_parameters());
  auto f = [&] { return static_cast<double>(m.forward(b.x.data(), b.y.data(), b.B, b.T, true, seed)); };
  for (const auto& p : m.layout())
    test::expect_gradient(p.name.c_str(), m.params() + p.offset, p.numel, grads.data() + p.offset, f, 1e-2f,
                          3e-2, 24);
}

TEST(ModelGradients, PreLN) { check_model_gradients(tiny()); }
TEST(ModelGradients, PostLN) { check_model_gradients(tiny(LnPlacement::Post)); }
TEST(ModelGradients, Banded) {
  check_model_gradients(tiny(LnPlacement::Pre, AttentionKind::AlternatingBanded));
}
TEST(ModelGradients, NoBiasUntied) {
  check_model_gradients(tiny(LnPlacement::Pre, AttentionKind::Dense, false, false));
}
TEST(ModelGradients, WithDropout) {
  check_model_gradients(tiny(LnPlacement::Pre, AttentionKind::Dense, true, true, 0.2f));
}

TEST(Model, InferenceEqualsTrainingWithoutDropout) {
  for (auto ln : {LnPlacement::Pre, LnPlacement::Post}) {
    GPT m(tiny(ln));
    randomize(m, 3);
    Batch b;
    const float l1 = m.forward(b.x.data(), b.y.data(), b.B, b.T, true);
    std::vector<float> a(m.logits(), m.logits() + b.B * b.T * 11);
    const float l2 = m.forward(b.x.data(), b.y.data(), b.B, b.T, false);
    EXPECT_EQ(l1, l2);
    for (size_t i = 0; i < a.size(); i++) ASSERT_EQ(a[i], m.logits()[i]);
  }
}

TEST(Model, CausalAndBatchIndependent) {
  GPT m(tiny(LnPlacement::Pre, AttentionKind::AlternatingBanded));
  randomize(m, 5);
  Batch b;
  m.forward(b.x.data(), nullptr, b.B, b.T);
  std::vector<float> full(m.logits(), m.logits() + b.B * b.T * 11);
  // the second sequence alone gives the same logits as in the batch
  m.forward(b.x.data() + b.T, nullptr, 1, b.T);
  for (int i = 0; i < b.T * 11; i++) EXPECT_NEAR(m.logits()[i], full[b.T * 11 + i], 1e-5);
  // changing the last token of sequence 0 leaves its earlier logits alone
  auto x = b.x;
  x[b.T - 1] = (x[b.T - 1] + 1) % 11;
  m.forward(x.data(), nullptr, b.B, b.T);
  for (int i = 0; i < (b.T - 1) * 11; i++) EXPECT_EQ(m.logits()[i], full[i]);
  bool changed = false;
  for (int i = (b.T - 1) * 11; i < b.T * 11; i++) changed |= m.logits()[i] != full[i];
  EXPECT_TRUE(changed);
}

TEST(Model, GradientAccumulationAddsUp) {
  GPT m(tiny());
  randomize(m, 8);
  Batch b;
  m.zero_grad();
  m.forward(b.x.data(), b.y.data(), b.B, b.T, true);
  m.backward();
  std::vector<float> once(m.grads(), m.grads() + m.num_parameters());
  m.zero_grad();
  for (int k = 0; k < 2; k++) {
    m.forward(b.x.data(), b.y.data(), b.B, b.T, true);
    m.backward(0.5f);
  }
  for (size_t i = 0; i < once.size(); i++)
    ASSERT_NEAR(m.grads()[i], once[i], 1e-5 + 1e-5 * std::fabs(once[i]));
}

TEST(Model, InitIsGPT2) {
  ModelConfig c = tiny();
  c.n_layer = 4;
  c.n_embd = 64;
  c.n_head = 4;
  c.vocab_size = 500;
  GPT m(c);
  m.init_gpt2(1);
  auto stddev = [&](const char* name) {
    const ParamInfo* p = m.find(name);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < p->numel; i++)
      s += m.params()[p->offset + i], s2 += std::pow(m.params()[p->offset + i], 2);
    return std::sqrt(s2 / p->numel - std::pow(s / p->numel, 2));
  };
  EXPECT_NEAR(stddev("wte.weight"), 0.02, 0.001);
  EXPECT_NEAR(stddev("h.0.attn.c_attn.weight"), 0.02, 0.001);
  EXPECT_NEAR(stddev("h.3.mlp.c_proj.weight"), 0.02 / std::sqrt(8.0), 0.001);
  EXPECT_EQ(m.param("h.1.mlp.c_fc.bias")[5], 0.0f);
  EXPECT_EQ(m.param("ln_f.weight")[3], 1.0f);
  // deterministic in the seed
  GPT m2(c);
  m2.init_gpt2(1);
  EXPECT_TRUE(std::equal(m.params(), m.params() + m.num_parameters(), m2.params()));
}

TEST(Model, RejectsBadInput) {
  GPT m(tiny());
  std::vector<TokenId> x = {1, 2, 11};
  EXPECT_THROW(m.forward(x.data(), nullptr, 1, 3), Error);  // id 11 >= vocab 11
  std::vector<TokenId> long_x(9, 1);
  EXPECT_THROW(m.forward(long_x.data(), nullptr, 1, 9), Error);  // longer than the context
  EXPECT_THROW(m.forward(x.data(), nullptr, 0, 3), Error);
  std::vector<TokenId> ok = {1, 2, 3};
  std::vector<int32_t> bad_t = {1, 2, 40};
  EXPECT_THROW(m.forward(ok.data(), bad_t.data(), 1, 3), Error);
  EXPECT_THROW(m.backward(), Error);  // no training forward yet
}

// The loss of predicting ids[p] from the window ids[begin, p), by a direct forward pass.
double window_loss(GPT& m, const std::vector<TokenId>& ids, size_t begin, size_t p) {
  const int T = static_cast<int>(p - begin);
  std::vector<int32_t> y(T, kIgnoreIndex);
  y[T - 1] = static_cast<int32_t>(ids[p]);
  return m.forward(ids.data() + begin, y.data(), 1, T);
}

TEST(Eval, WindowsScoreEveryTokenOnceWithTheDocumentedContext) {
  ModelConfig c = tiny();
  c.n_ctx = 8;
  GPT m(c);
  randomize(m, 11);
  std::vector<TokenId> ids(21);
  for (size_t i = 0; i < ids.size(); i++) ids[i] = static_cast<TokenId>((i * 7 + 3) % 11);
  // stride = window: non-overlapping windows [0,8), [8,16), then the last moved back to [12,20):
  // targets 1..8 from window 0, 9..16 from window 8, 17..20 from window 12.
  double expect = 0;
  for (size_t p = 1; p <= 20; p++) {
    const size_t begin = p <= 8 ? 0 : (p <= 16 ? 8 : 12);
    expect += window_loss(m, ids, begin, p);
  }
  EvalResult r = evaluate(m, ids, {8, 8, 2});
  EXPECT_EQ(r.tokens, 20u);
  EXPECT_EQ(r.windows, 3u);
  EXPECT_NEAR(r.loss, expect / 20, 1e-5);
  // stride 1: every token after the first window has exactly T - S + 1 = 8 tokens of context
  expect = 0;
  for (size_t p = 1; p <= 20; p++) expect += window_loss(m, ids, p <= 8 ? 0 : p - 8, p);
  for (int batch : {1, 3, 64}) {
    r = evaluate(m, ids, {8, 1, batch});
    EXPECT_EQ(r.tokens, 20u);
    EXPECT_NEAR(r.loss, expect / 20, 1e-5) << "batch " << batch;
    EXPECT_NEAR(r.perplexity, std::exp(r.loss), 1e-9 * r.perplexity);
  }
  // an input shorter than the window is one short window
  std::vector<TokenId> few(ids.begin(), ids.begin() + 4);
  r = evaluate(m, few, {});
  EXPECT_EQ(r.tokens, 3u);
  EXPECT_EQ(r.windows, 1u);
  // bad input
  std::vector<TokenId> one = {1};
  EXPECT_THROW(evaluate(m, one, {}), Error);
  EXPECT_THROW(evaluate(m, ids, {9, 0, 1}), Error);  // longer than the context
  EXPECT_THROW(evaluate(m, ids, {4, 5, 1}), Error);  // stride beyond the window
  std::vector<TokenId> bad = {1, 2, 11};
  EXPECT_THROW(evaluate(m, bad, {}), Error);
}

}  // namespace
}  // namespace gpt
