// LoRA adapters: gradients by finite differences (the adapter op alone and through the whole
// model), merged weights against base + adapter, the PEFT file layout, and training the adapters
// alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/io.h"
#include "grad_check.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "io/peft.h"
#include "model/lora.h"
#include "train/adamw.h"
#include "train/trainable.h"

namespace gpt {
namespace {

ModelConfig tiny(LnPlacement ln = LnPlacement::Pre, bool bias = true) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.n_ctx = 8;
  c.vocab_size = 11;
  c.ln = ln;
  c.bias = bias;
  c.dropout = 0.0f;
  return c;
}

void randomize(GPT& m, uint64_t seed) {
  auto r = test::randn(m.num_parameters(), seed, 0.3f);
  std::copy(r.begin(), r.end(), m.params());
  for (const auto& p : m.layout())
    if (p.name.find("ln_") != std::string::npos && p.name.ends_with(".weight"))
      for (size_t i = 0; i < p.numel; i++) m.params()[p.offset + i] += 1.0f;
}

// Random A and B (B = 0 would hide every A gradient).
void randomize(LoraAdapters& a, uint64_t seed) {
  auto r = test::randn(a.num_parameters(), seed, 0.3f);
  std::copy(r.begin(), r.end(), a.params());
}

LoraConfig lora_cfg(std::vector<std::string> targets = {"c_attn", "c_proj", "c_fc"}, float dropout = 0.0f) {
  LoraConfig c;
  c.r = 3;
  c.alpha = 5.0f;
  c.dropout = dropout;
  c.targets = std::move(targets);
  return c;
}

struct Batch {
  int B = 2, T = 6;
  std::vector<TokenId> x = {1, 4, 7, 2, 10, 3, 0, 0, 5, 9, 1, 8};
  std::vector<int32_t> y = {4, 7, 2, 10, 3, -1, 0, 5, 9, 1, 8, 6};
};

TEST(Lora, TargetsAndPeftNames) {
  EXPECT_EQ(lora_target_mask({"c_proj"}), (std::array<bool, 4>{false, true, false, true}));
  EXPECT_EQ(lora_target_mask({"attn.c_proj", "c_fc"}), (std::array<bool, 4>{false, true, true, false}));
  EXPECT_EQ(lora_target_mask({"mlp.c_proj"}), (std::array<bool, 4>{false, false, false, true}));
  EXPECT_THROW(lora_target_mask({"q_proj"}), Error);
  EXPECT_THROW(lora_target_mask({}), Error);
  // The keys PEFT's get_peft_model_state_dict gives for GPT2LMHeadModel with
  // target_modules = ["c_attn", "c_proj", "c_fc"], written down by hand (Conv1D: in = rows of W).
  LoraConfig c = lora_cfg({"c_attn", "c_proj", "c_fc"});
  c.r = 4;
  const auto layout = lora_layout(tiny(), c);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", {4, 8}},
      {"base_model.model.transformer.h.0.attn.c_attn.lora_B.weight", {24, 4}},
      {"base_model.model.transformer.h.0.attn.c_proj.lora_A.weight", {4, 8}},
      {"base_model.model.transformer.h.0.attn.c_proj.lora_B.weight", {8, 4}},
      {"base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight", {4, 8}},
      {"base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight", {32, 4}},
      {"base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight", {4, 32}},
      {"base_model.model.transformer.h.0.mlp.c_proj.lora_B.weight", {8, 4}},
      {"base_model.model.transformer.h.1.attn.c_attn.lora_A.weight", {4, 8}},
      {"base_model.model.transformer.h.1.attn.c_attn.lora_B.weight", {24, 4}},
      {"base_model.model.transformer.h.1.attn.c_proj.lora_A.weight", {4, 8}},
      {"base_model.model.transformer.h.1.attn.c_proj.lora_B.weight", {8, 4}},
      {"base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight", {4, 8}},
      {"base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight", {32, 4}},
      {"base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight", {4, 32}},
      {"base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight", {8, 4}},
  };
  ASSERT_EQ(layout.size(), expected.size());
  for (size_t i = 0; i < layout.size(); i++) {
    EXPECT_EQ(layout[i].name, expected[i].first);
    EXPECT_EQ(layout[i].shape, expected[i].second) << layout[i].name;
  }
  LoraAdapters a(tiny(), c);
  EXPECT_EQ(a.num_parameters(), 2u * (4 * 8 + 24 * 4 + 4 * 8 + 8 * 4 + 4 * 8 + 32 * 4 + 4 * 32 + 8 * 4));
  a.init(1);
  const LoraTensor* A = a.find("base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight");
  const LoraTensor* B = a.find("base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight");
  float amax = 0, bmax = 0;
  for (size_t i = 0; i < A->numel; i++) amax = std::max(amax, std::fabs(a.params()[A->offset + i]));
  for (size_t i = 0; i < B->numel; i++) bmax = std::max(bmax, std::fabs(a.params()[B->offset + i]));
  EXPECT_GT(amax, 0.5f / std::sqrt(32.0f));  // Kaiming-uniform bound 1/sqrt(in)
  EXPECT_LE(amax, 1.0f / std::sqrt(32.0f));
  EXPECT_EQ(bmax, 0.0f);
}

// The adapter op on its own (ops.h lora_forward / lora_backward): out += scale * B(A(drop(x))),
// gradients of A, B and x against finite differences, with and without dropout; the backward adds
// to dinp and to the gradients, it does not overwrite them.
TEST(Lora, OpGradients) {
  for (float p : {0.0f, 0.3f}) {
    const int N = 5, in = 32, r = 4, out = 8;
    const float scale = 2.5f;
    auto x = test::randn(static_cast<size_t>(N) * in, 4);
    auto A = test::randn(static_cast<size_t>(r) * in, 6);
    auto B = test::randn(static_cast<size_t>(out) * r, 7);
    const auto dy = test::randn(static_cast<size_t>(N) * out, 5);
    const ops::Dropout drop{p, 1234};
    std::vector<float> y(static_cast<size_t>(N) * out), u(static_cast<size_t>(N) * r), xd(x.size()), du(u.size());
    auto f = [&] {
      std::fill(y.begin(), y.end(), 0.5f);  // added to, not overwritten
      ops::lora_forward(y.data(), u.data(), xd.data(), x.data(), A.data(), B.data(), N, in, r, out, scale, drop);
      return test::project(y.data(), dy);
    };
    f();
    std::vector<float> dx(x.size(), 0.25f), dA(A.size(), 0.5f), dB(B.size(), -0.5f);
    ops::lora_backward(dx.data(), dA.data(), dB.data(), du.data(), xd.data(), dy.data(), x.data(), u.data(), A.data(),
                       B.data(), N, in, r, out, scale, drop);
    for (auto& v : dx) v -= 0.25f;
    for (auto& v : dA) v -= 0.5f;
    for (auto& v : dB) v += 0.5f;
    test::expect_gradient("A", A.data(), A.size(), dA.data(), f, 1e-2f, 1e-2, 64);
    test::expect_gradient("B", B.data(), B.size(), dB.data(), f, 1e-2f, 1e-2, 64);
    test::expect_gradient("x", x.data(), x.size(), dx.data(), f, 1e-2f, 1e-2, 64);
  }
}

// The mean loss through the whole model with adapters: finite differences for every adapter tensor;
// the base gets no gradient and does not change.
void check_model_lora(const ModelConfig& mc, const LoraConfig& lc) {
  GPT m(mc);
  randomize(m, 42);
  LoraAdapters a(mc, lc);
  randomize(a, 43);
  m.attach_lora(&a);
  Trainable::none(m).apply(m);  // the adapters alone train
  for (size_t t = 0; t < m.layout().size(); t++) EXPECT_FALSE(m.requires_grad(t));
  Batch b;
  const uint64_t seed = 9;
  m.zero_grad();
  m.forward(b.x.data(), b.y.data(), b.B, b.T, true, seed);
  m.backward();
  for (size_t i = 0; i < m.num_parameters(); i++) ASSERT_EQ(m.grads()[i], 0.0f);
  std::vector<float> grads(a.grads(), a.grads() + a.num_parameters());
  auto f = [&] { return static_cast<double>(m.forward(b.x.data(), b.y.data(), b.B, b.T, true, seed)); };
  for (const auto& t : a.layout())
    test::expect_gradient(t.name.c_str(), a.params() + t.offset, t.numel, grads.data() + t.offset, f, 1e-2f,
                          3e-2, 24);
}

TEST(Lora, ModelGradientsPreLN) { check_model_lora(tiny(), lora_cfg({"c_attn", "c_proj", "c_fc"})); }
TEST(Lora, ModelGradientsPostLNNoBias) {
  check_model_lora(tiny(LnPlacement::Post, false), lora_cfg({"c_attn", "c_proj", "c_fc"}));
}
TEST(Lora, ModelGradientsOneTargetWithDropout) {
  ModelConfig mc = tiny();
  mc.dropout = 0.1f;
  check_model_lora(mc, lora_cfg({"mlp.c_proj"}, 0.2f));
  check_model_lora(mc, lora_cfg({"attn.c_proj", "c_fc"}, 0.2f));
}

// Through forward_hidden / backward_hidden (a classification head on an adapted model).
TEST(Lora, HiddenStateGradients) {
  GPT m(tiny(LnPlacement::Post));
  randomize(m, 12);
  LoraAdapters a(tiny(LnPlacement::Post), lora_cfg({"c_attn", "c_proj", "c_fc"}, 0.1f));
  randomize(a, 13);
  m.attach_lora(&a);
  Batch b;
  const auto r = test::randn(static_cast<size_t>(b.B) * b.T * 8, 14);
  m.zero_grad();
  m.forward_hidden(b.x.data(), b.B, b.T, true, 3);
  m.backward_hidden(r.data());
  std::vector<float> grads(a.grads(), a.grads() + a.num_parameters());
  auto f = [&] {
    m.forward_hidden(b.x.data(), b.B, b.T, true, 3);
    return test::project(m.hidden(), r);
  };
  for (const auto& t : a.layout())
    test::expect_gradient(t.name.c_str(), a.params() + t.offset, t.numel, grads.data() + t.offset, f, 1e-2f,
                          3e-2, 16);
}

// Zero B: the adapted model computes exactly the base model.
TEST(Lora, ZeroBChangesNothing) {
  GPT m(tiny());
  randomize(m, 1);
  Batch b;
  const float base = m.forward(b.x.data(), b.y.data(), b.B, b.T);
  std::vector<float> logits(m.logits(), m.logits() + b.B * b.T * 11);
  LoraAdapters a(tiny(), lora_cfg());
  a.init(7);
  m.attach_lora(&a);
  EXPECT_EQ(m.forward(b.x.data(), b.y.data(), b.B, b.T), base);
  for (size_t i = 0; i < logits.size(); i++) ASSERT_EQ(m.logits()[i], logits[i]);
  m.attach_lora(nullptr);
  for (size_t t = 0; t < m.layout().size(); t++) EXPECT_TRUE(m.requires_grad(t));  // untouched by LoRA
}

TEST(Lora, MergedModelGivesTheSameLogits) {
  for (auto targets :
       {std::vector<std::string>{"c_attn", "c_proj", "c_fc"}, std::vector<std::string>{"mlp.c_proj"}}) {
    GPT m(tiny());
    randomize(m, 2);
    LoraAdapters a(tiny(), lora_cfg(targets));
    randomize(a, 5);
    Batch b;
    m.forward(b.x.data(), nullptr, b.B, b.T);
    std::vector<float> base(m.logits(), m.logits() + b.B * b.T * 11);
    m.attach_lora(&a);
    m.forward(b.x.data(), nullptr, b.B, b.T);
    std::vector<float> adapted(m.logits(), m.logits() + b.B * b.T * 11);
    m.attach_lora(nullptr);
    merge_lora(m, a);
    m.forward(b.x.data(), nullptr, b.B, b.T);
    double moved = 0;
    for (size_t i = 0; i < adapted.size(); i++) {
      ASSERT_NEAR(m.logits()[i], adapted[i], 1e-5) << i;
      moved = std::max(moved, std::fabs(static_cast<double>(adapted[i]) - base[i]));
    }
    EXPECT_GT(moved, 1e-2);  // the adapter mattered
  }
}

TEST(Lora, SaveLoadRoundTripAndErrors) {
  const std::string dir = ::testing::TempDir() + "/gpt_lora_test";
  std::filesystem::remove_all(dir);
  GPT m(tiny());
  LoraAdapters a(tiny(), lora_cfg({"c_attn", "mlp.c_proj"}));
  randomize(a, 8);
  save_lora(dir, a, "tiny-base");
  LoraAdapters b = load_lora(dir, m);
  EXPECT_EQ(b.config().r, 3);
  EXPECT_EQ(b.config().alpha, 5.0f);
  EXPECT_EQ(b.config().targets, (std::vector<std::string>{"c_attn", "mlp.c_proj"}));
  ASSERT_EQ(b.num_parameters(), a.num_parameters());
  for (size_t i = 0; i < a.num_parameters(); i++) ASSERT_EQ(b.params()[i], a.params()[i]);
  const std::string cfg = read_file(dir + "/adapter_config.json");
  for (const char* want :
       {"\"peft_type\": \"LORA\"", "\"task_type\": \"CAUSAL_LM\"", "\"fan_in_fan_out\": true",
        "\"bias\": \"none\"", "\"base_model_name_or_path\": \"tiny-base\"", "\"lora_alpha\": 5.0"})
    EXPECT_NE(cfg.find(want), std::string::npos) << want << " in " << cfg;

  // a model of another width: the first tensor's shape is wrong
  ModelConfig wide = tiny();
  wide.n_embd = 16;
  try {
    load_lora(dir, GPT(wide));
    ADD_FAILURE() << "loaded adapters for the wrong width";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [3, 8], expected [3, 16]"), std::string::npos)
        << e.what();
  }
  // a missing tensor and an extra one
  auto rewrite = [&](const std::vector<std::string>& drop, bool extra) {
    std::vector<TensorView> t;
    for (const auto& x : a.layout())
      if (std::find(drop.begin(), drop.end(), x.name) == drop.end())
        t.push_back({x.name, DType::F32, x.shape, a.params() + x.offset});
    if (extra) t.push_back({"base_model.model.lm_head.lora_A.weight", DType::F32, {1}, a.params()});
    write_safetensors(dir + "/adapter_model.safetensors", t);
  };
  rewrite({"base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"}, false);
  EXPECT_THROW(load_lora(dir, m), Error);
  rewrite({}, true);
  EXPECT_THROW(load_lora(dir, m), Error);
  write_file_atomic(dir + "/adapter_config.json", "{\"peft_type\": \"PREFIX_TUNING\"}");
  EXPECT_THROW(load_lora(dir, m), Error);
  std::filesystem::remove_all(dir);
}

// The adapters go through the backend's ops: on the staged backend (device-style memory) a training
// forward and backward give the CPU's loss and adapter gradients bit for bit.
TEST(Lora, StagedBackendEqualsTheCpu) {
  ModelConfig mc = tiny();
  mc.dropout = 0.1f;
  GPT cpu(mc), dev(mc, backend_for("cpu-staged"));
  randomize(cpu, 42);
  std::copy(cpu.params(), cpu.params() + cpu.num_parameters(), dev.params());
  LoraAdapters a(mc, lora_cfg({"c_attn", "c_proj", "c_fc"}, 0.2f)),
      b(mc, lora_cfg({"c_attn", "c_proj", "c_fc"}, 0.2f), dev.backend());  // in the staged backend's memory
  randomize(a, 43);
  b.set_params(a.params());
  EXPECT_THROW(dev.attach_lora(&a), Error);  // adapters on another backend than the model's
  cpu.attach_lora(&a);
  dev.attach_lora(&b);
  Batch x;
  for (int step = 0; step < 2; step++) {
    cpu.zero_grad();
    dev.zero_grad();
    const float la = cpu.forward(x.x.data(), x.y.data(), x.B, x.T, true, 7 + step);
    const float lb = dev.forward(x.x.data(), x.y.data(), x.B, x.T, true, 7 + step);
    EXPECT_EQ(la, lb);
    cpu.backward();
    dev.backward();
    ASSERT_EQ(std::memcmp(a.grads(), b.host_grads().data(), a.num_parameters() * sizeof(float)), 0) << "step " << step;
    for (size_t i = 0; i < a.num_parameters(); i++) a.params()[i] -= 0.1f * a.grads()[i];
    b.set_params(a.params());
  }
  double norm = 0;
  for (size_t i = 0; i < a.num_parameters(); i++) norm += a.grads()[i] * a.grads()[i];
  EXPECT_GT(norm, 0.0);  // the comparison covered real gradients
  GPT other(tiny());
  ModelConfig deeper = tiny();
  deeper.n_layer = 3;
  LoraAdapters wrong(deeper, lora_cfg());
  EXPECT_THROW(other.attach_lora(&wrong), Error);
}

// Generation packs the base weights: with adapters attached it must refuse, not drop them.
TEST(Lora, PackingRefusesAttachedAdapters) {
  GPT m(tiny());
  LoraAdapters a(tiny(), lora_cfg());
  m.attach_lora(&a);
  EXPECT_THROW(m.pack(ops::WeightType::F32), Error);
  EXPECT_FALSE(m.packed());
  m.attach_lora(nullptr);
  EXPECT_NO_THROW(m.pack(ops::WeightType::F32));
  EXPECT_TRUE(m.packed());
}

// Training the adapters alone, as AdamW's only group: the loss falls, the base stays bit-identical.
TEST(Lora, TrainsAloneAsAnAdamWGroup) {
  GPT m(tiny());
  randomize(m, 11);
  const std::vector<float> base(m.params(), m.params() + m.num_parameters());
  LoraConfig lc = lora_cfg();
  lc.r = 4;
  lc.alpha = 8;
  LoraAdapters a(tiny(), lc);
  a.init(3);
  m.attach_lora(&a);
  Trainable::none(m).apply(m);
  AdamW opt(cpu_backend(), AdamWConfig{1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f});
  opt.add_group({"lora", a.params(), a.grads(), a.num_parameters(), {}});
  Batch b;
  float first = 0, last = 0;
  for (int step = 0; step < 30; step++) {
    m.zero_grad();
    const float loss = m.forward(b.x.data(), b.y.data(), b.B, b.T, true, step);
    m.backward();
    opt.step(2e-2f);
    (step == 0 ? first : last) = loss;
  }
  EXPECT_LT(last, first * 0.8f) << first << " -> " << last;
  EXPECT_EQ(m.gradient_bytes(), 0u);  // the frozen base never needed a gradient arena
  for (size_t i = 0; i < base.size(); i++) ASSERT_EQ(m.params()[i], base[i]);
}

}  // namespace
}  // namespace gpt
