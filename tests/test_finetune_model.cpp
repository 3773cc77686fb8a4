// The model side of fine-tuning: hidden states (the input of a task head) with their backward, the
// trainable set (freezing), and AdamW over a trainable subset or over a buffer outside the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "grad_check.h"
#include "model/gpt.h"
#include "model_test_util.h"
#include "train/adamw.h"
#include "train/trainable.h"

namespace gpt {
namespace {

using test::Batch;
using test::randomize;

ModelConfig tiny(LnPlacement ln = LnPlacement::Pre, bool tied = true, float dropout = 0.0f) {
  ModelConfig c;
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 8;
  c.n_ctx = 8;
  c.vocab_size = 11;
  c.ln = ln;
  c.tied_head = tied;
  c.dropout = dropout;
  return c;
}

// forward() then the LM head == forward_hidden() then hidden @ head^T.
TEST(HiddenStates, FeedTheLmHead) {
  for (auto ln : {LnPlacement::Pre, LnPlacement::Post})
    for (bool tied : {true, false}) {
      GPT m(tiny(ln, tied));
      randomize(m, 1);
      Batch b;
      m.forward(b.x.data(), nullptr, b.B, b.T);
      std::vector<float> logits(m.logits(), m.logits() + b.B * b.T * 11);
      m.forward_hidden(b.x.data(), b.B, b.T);
      EXPECT_EQ(m.logits(), nullptr);  // no head ran
      const float* h = m.hidden();
      const float* head = tied ? m.param("wte.weight") : m.param("lm_head.weight");
      for (int i = 0; i < b.B * b.T; i++)
        for (int v = 0; v < 11; v++) {
          double s = 0;
          for (int c = 0; c < 8; c++) s += static_cast<double>(h[i * 8 + c]) * head[v * 8 + c];
          ASSERT_NEAR(s, logits[i * 11 + v], 1e-5) << "row " << i << " vocab " << v;
        }
    }
}

// d/dparams of sum(hidden * r) by finite differences, every tensor that reaches hidden.
void check_hidden_gradients(const ModelConfig& cfg) {
  GPT m(cfg);
  randomize(m, 42);
  Batch b;
  const uint64_t seed = 7;
  const auto r = test::randn(static_cast<size_t>(b.B) * b.T * cfg.n_embd, 5);
  m.zero_grad();
  m.forward_hidden(b.x.data(), b.B, b.T, true, seed);
  m.backward_hidden(r.data());
  std::vector<float> grads(m.grads(), m.grads() + m.num_parameters());
  auto f = [&] {
    m.forward_hidden(b.x.data(), b.B, b.T, true, seed);
    return test::project(m.hidden(), r);
  };
  for (const auto& p : m.layout()) {
    if (p.name.starts_with("lm_head")) {  // not on the path to hidden
      for (size_t i = 0; i < p.numel; i++) ASSERT_EQ(grads[p.offset + i], 0.0f);
      continue;
    }
    test::expect_gradient(p.name.c_str(), m.params() + p.offset, p.numel, grads.data() + p.offset, f, 1e-2f,
                          3e-2, 24);
  }
}

TEST(HiddenStates, GradientsPreLN) { check_hidden_gradients(tiny(LnPlacement::Pre, false)); }
TEST(HiddenStates, GradientsPostLN) { check_hidden_gradients(tiny(LnPlacement::Post)); }
TEST(HiddenStates, GradientsWithDropout) { check_hidden_gradients(tiny(LnPlacement::Pre, true, 0.2f)); }

TEST(HiddenStates, BackwardNeedsATrainingForward) {
  GPT m(tiny());
  Batch b;
  m.forward_hidden(b.x.data(), b.B, b.T, false);
  std::vector<float> d(b.B * b.T * 8, 1.0f);
  EXPECT_THROW(m.backward_hidden(d.data()), Error);
  m.forward_hidden(b.x.data(), b.B, b.T, true);
  EXPECT_THROW(m.backward(), Error);  // no logits, no loss
}

std::vector<float> full_gradients(const ModelConfig& cfg, uint64_t dropout_seed) {
  GPT m(cfg);
  randomize(m, 3);
  Batch b;
  m.zero_grad();
  m.forward(b.x.data(), b.y.data(), b.B, b.T, true, dropout_seed);
  m.backward();
  return {m.grads(), m.grads() + m.num_parameters()};
}

// With a subset trainable, its gradients are the full model's, the rest get none.
void check_subset(const ModelConfig& cfg, const std::function<Trainable(const GPT&)>& choose,
                  const std::vector<std::string>& expect_frozen,
                  const std::vector<std::string>& expect_trainable) {
  const auto full = full_gradients(cfg, 11);
  GPT m(cfg);
  randomize(m, 3);
  const Trainable tr = choose(m);
  tr.apply(m);
  for (const auto& n : expect_frozen) EXPECT_FALSE(tr.contains(n)) << n;
  for (const auto& n : expect_trainable) EXPECT_TRUE(tr.contains(n)) << n;
  Batch b;
  m.zero_grad();
  m.forward(b.x.data(), b.y.data(), b.B, b.T, true, 11);
  m.backward();
  size_t n_trainable = 0;
  for (size_t t = 0; t < m.layout().size(); t++) {
    const ParamInfo& p = m.layout()[t];
    for (size_t i = 0; i < p.numel; i++) {
      const float g = m.grads()[p.offset + i];
      if (tr.contains(t))
        ASSERT_NEAR(g, full[p.offset + i], 1e-6 + 1e-5 * std::fabs(full[p.offset + i]))
            << p.name << "[" << i << "]";
      else
        ASSERT_EQ(g, 0.0f) << p.name << " is frozen";
    }
    EXPECT_EQ(m.requires_grad(t), tr.contains(t)) << p.name;
    n_trainable += tr.contains(t) ? p.numel : 0;
  }
  EXPECT_EQ(tr.num_parameters(), n_trainable);
  EXPECT_GT(n_trainable, 0u);
}

TEST(Freeze, BelowALayerGivesTheFullModelsGradients) {
  for (auto ln : {LnPlacement::Pre, LnPlacement::Post})
    for (bool tied : {true, false})
      check_subset(tiny(ln, tied, 0.1f), [](const GPT& m) { return Trainable::from_layer(m, 2); },
                   {"wte.weight", "wpe.weight", "h.1.ln_2.weight"},
                   {"h.2.attn.c_attn.weight", "h.2.ln_1.weight"});
}

TEST(Freeze, APredicateFreezesTheEmbeddingsToo) {
  // only the MLP of the middle block and ln_f: the embeddings follow into the frozen set
  check_subset(tiny(LnPlacement::Pre, false),
               [](const GPT& m) {
                 return Trainable::where(m, [](const ParamInfo& p) {
                   return p.name.starts_with("h.1.mlp") || p.name.starts_with("ln_f") ||
                          p.name.starts_with("wte");
                 });
               },
               {"wte.weight", "wpe.weight", "h.2.mlp.c_fc.weight", "h.1.ln_2.weight", "lm_head.weight"},
               {"h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.bias", "ln_f.weight"});
}

TEST(Freeze, AllAndNone) {
  GPT m(tiny());
  EXPECT_TRUE(Trainable::all(m).all());
  EXPECT_EQ(Trainable::all(m).num_parameters(), m.num_parameters());
  Trainable::none(m).apply(m);
  EXPECT_EQ(Trainable::none(m).num_parameters(), 0u);
  for (size_t t = 0; t < m.layout().size(); t++) EXPECT_FALSE(m.requires_grad(t));
  randomize(m, 2);
  Batch b;
  m.zero_grad();
  m.forward(b.x.data(), b.y.data(), b.B, b.T, true);
  m.backward();  // nothing to do
  for (size_t i = 0; i < m.num_parameters(); i++) ASSERT_EQ(m.grads()[i], 0.0f);
  Trainable::all(m).apply(m);
  for (size_t t = 0; t < m.layout().size(); t++) EXPECT_TRUE(m.requires_grad(t));
  EXPECT_THROW(Trainable::from_layer(m, 4), Error);
  EXPECT_THROW(Trainable::all(m).contains("h.9.ln_1.weight"), Error);
  // The model refuses a mask that trains the embeddings without the rest.
  std::vector<char> mask(m.layout().size(), 0);
  mask[0] = 1;
  EXPECT_THROW(m.set_requires_grad(mask), Error);
}

TEST(Freeze, AdamWLeavesFrozenTensorsBitIdentical) {
  GPT m(tiny(LnPlacement::Pre, true, 0.1f));
  randomize(m, 4);
  const Trainable tr = Trainable::from_layer(m, 1);
  tr.apply(m);
  const std::vector<float> before(m.params(), m.params() + m.num_parameters());
  AdamW opt(m, AdamWConfig{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, tr);
  Batch b;
  for (int step = 0; step < 3; step++) {
    m.zero_grad();
    m.forward(b.x.data(), b.y.data(), b.B, b.T, true, step);
    m.backward();
    opt.step(1e-2f);
  }
  for (size_t t = 0; t < m.layout().size(); t++) {
    const ParamInfo& p = m.layout()[t];
    size_t changed = 0;
    for (size_t i = 0; i < p.numel; i++) changed += m.params()[p.offset + i] != before[p.offset + i];
    if (tr.contains(t))
      EXPECT_EQ(changed, p.numel) << p.name;
    else
      EXPECT_EQ(changed, 0u) << p.name;
  }
}

// The same numbers through a group of host arrays and through the model's group give the same bits.
TEST(AdamW, AGroupMatchesTheModelGroup) {
  GPT m(tiny());
  randomize(m, 6);
  Batch b;
  std::vector<float> p(m.params(), m.params() + m.num_parameters());
  std::vector<dist::Segment> segs;
  for (const auto& t : m.layout()) segs.push_back({t.offset, t.numel, t.decay});
  const AdamWConfig cfg{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW opt(m, cfg);
  std::vector<float> g(p.size());
  AdamW buf(cpu_backend(), cfg);
  buf.add_group({"copy", p.data(), g.data(), p.size(), segs});
  for (int step = 0; step < 3; step++) {
    m.zero_grad();
    m.forward(b.x.data(), b.y.data(), b.B, b.T, true);
    m.backward();
    std::copy(m.grads(), m.grads() + g.size(), g.begin());
    buf.step(3e-3f);
    opt.step(3e-3f);
  }
  EXPECT_EQ(buf.steps(), 3);
  for (size_t i = 0; i < p.size(); i++) ASSERT_EQ(p[i], m.params()[i]) << i;
  EXPECT_THROW(buf.add_group({"bad", p.data(), g.data(), 4, {{2, 3, true}}}), Error);
}

}  // namespace
}  // namespace gpt
