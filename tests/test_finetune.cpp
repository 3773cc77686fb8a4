// The fine-tuning loop and the instruction task: response-only loss, masking, padding and packing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "finetune/instruct.h"
#include "finetune/loop.h"
#include "test_util.h"

namespace gpt {
namespace {

constexpr TokenId kEot = 31;

ModelConfig tiny() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.n_ctx = 32;
  c.vocab_size = 32;
  return c;
}

// prompt (untrained) then response + eot (trained).
EncodedExample example(std::vector<TokenId> prompt, std::vector<TokenId> resp) {
  EncodedExample e;
  e.ids = prompt;
  e.trained.assign(prompt.size(), 0);
  for (TokenId t : resp) {
    e.ids.push_back(t);
    e.trained.push_back(1);
  }
  e.ids.push_back(kEot);
  e.trained.push_back(1);
  return e;
}

TEST(Finetune, PadAndPackBatches) {
  EncodedExample a = example({1, 2, 3}, {4});     // 5 tokens
  EncodedExample b = example({5, 6}, {7, 8, 9});  // 6 tokens
  std::vector<const EncodedExample*> ex = {&a, &b};
  TokenBatch p = pad_batch(ex, kEot);
  ASSERT_EQ(p.B, 2);
  ASSERT_EQ(p.T, 5);
  EXPECT_EQ(p.inputs, (std::vector<TokenId>{1, 2, 3, 4, kEot, 5, 6, 7, 8, 9}));
  const int32_t I = kIgnoreIndex;
  EXPECT_EQ(p.targets, (std::vector<int32_t>{I, I, 4, 31, I, I, 7, 8, 9, 31}));
  TokenBatch k = pack_batch(ex, kEot, 10);  // 11 tokens fit in one row
  ASSERT_EQ(k.B, 1);
  ASSERT_EQ(k.T, 10);
  EXPECT_EQ(k.inputs, (std::vector<TokenId>{1, 2, 3, 4, kEot, 5, 6, 7, 8, 9}));
  EXPECT_EQ(k.targets, (std::vector<int32_t>{I, I, 4, 31, I, I, 7, 8, 9, 31}));
  EXPECT_EQ(pack_batch(ex, kEot, 9).B, 2);
}

// Masked positions (prompt and padding) contribute exactly nothing: their rows of the logits'
// gradient are exactly zero, and changing the padding tokens leaves every gradient bit-identical.
TEST(Finetune, MaskedPositionsHaveZeroGradient) {
  GPT m(tiny());
  m.init_gpt2(7);
  EncodedExample a = example({1, 2, 3, 4, 5}, {6, 7});
  EncodedExample b = example({8, 9}, {10});
  std::vector<const EncodedExample*> ex = {&a, &b};
  TokenBatch batch = pad_batch(ex, kEot);
  auto grads_of = [&](const TokenBatch& tb, std::vector<float>* dlogits) {
    m.zero_grad();
    m.forward(tb.inputs.data(), tb.targets.data(), tb.B, tb.T, true, 1);
    m.backward(1.0f);
    if (dlogits) dlogits->assign(m.logits(), m.logits() + static_cast<size_t>(tb.B) * tb.T * 32);
    return std::vector<float>(m.grads(), m.grads() + m.num_parameters());
  };
  std::vector<float> dl;
  std::vector<float> g1 = grads_of(batch, &dl);
  size_t masked = 0, scored = 0;
  for (int i = 0; i < batch.B * batch.T; ++i) {
    bool all_zero = true;
    for (int v = 0; v < 32; ++v) all_zero = all_zero && dl[static_cast<size_t>(i) * 32 + v] == 0.0f;
    if (batch.targets[i] == kIgnoreIndex) {
      EXPECT_TRUE(all_zero) << "position " << i;
      ++masked;
    } else {
      EXPECT_FALSE(all_zero) << "position " << i;
      ++scored;
    }
  }
  EXPECT_EQ(scored, 5u);  // 6, 7, eot and 10, eot
  EXPECT_EQ(masked, 9u);
  // Other padding tokens: the gradient does not change by a single bit.
  TokenBatch other = batch;
  for (int i = 0; i < other.B * other.T; ++i)
    if (i >= other.T + 3) other.inputs[i] = static_cast<TokenId>(20 + i % 7);  // row 1 past its end
  std::vector<float> g2 = grads_of(other, nullptr);
  ASSERT_NE(other.inputs, batch.inputs);
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)), 0);
  // A changed prompt token does change it (the test can fail).
  TokenBatch prompt = batch;
  prompt.inputs[1] = 30;
  std::vector<float> g3 = grads_of(prompt, nullptr);
  EXPECT_NE(std::memcmp(g1.data(), g3.data(), g1.size() * sizeof(float)), 0);
}

// The padded batch's loss is the response-token-weighted mean of the examples' own losses.
TEST(Finetune, PaddedLossIsTokenWeightedMean) {
  GPT m(tiny());
  m.init_gpt2(3);
  std::vector<EncodedExample> ex = {example({1, 2, 3}, {4, 5, 6, 7}), example({8}, {9}),
                                    example({10, 11, 12, 13, 14, 15}, {16, 17})};
  double sum = 0;
  size_t n = 0;
  for (const EncodedExample& e : ex) {
    std::vector<const EncodedExample*> one = {&e};
    TokenBatch b = pad_batch(one, kEot);
    float l = m.forward(b.inputs.data(), b.targets.data(), 1, b.T);
    sum += static_cast<double>(l) * m.scored_targets();
    n += m.scored_targets();
  }
  EXPECT_EQ(n, 5u + 2u + 3u);
  std::vector<const EncodedExample*> all = {&ex[0], &ex[1], &ex[2]};
  TokenBatch b = pad_batch(all, kEot);
  float l = m.forward(b.inputs.data(), b.targets.data(), b.B, b.T);
  EXPECT_NEAR(l, sum / n, 1e-5);
  EXPECT_NEAR(response_loss(m, ex, kEot, 2), sum / n, 1e-5);
}

// Synthetic instructions: the response repeats the prompt's first two tokens. The loop learns it:
// the held-out response loss falls well below its start.
std::vector<EncodedExample> copy_task(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<EncodedExample> out;
  for (int i = 0; i < n; ++i) {
    TokenId x = 1 + rng() % 12, y = 1 + rng() % 12;
    out.push_back(example({29, x, y, 30}, {x, y}));
  }
  return out;
}

TEST(Finetune, LoopLowersHeldOutResponseLoss) {
  GPT m(tiny());
  m.init_gpt2(11);
  InstructTask task(copy_task(96, 1), copy_task(32, 2), kEot, 31, false, 16);
  FinetuneConfig cfg;
  cfg.epochs = 12;
  cfg.batch_size = 16;
  cfg.schedule.lr = 1e-2f;
  cfg.schedule.min_lr = 1e-3f;
  cfg.adam.weight_decay = 0.0f;
  cfg.quiet = true;
  cfg.out_dir = test::temp_dir("finetune_loop");
  FinetuneResult r = finetune(m, nullptr, task, cfg);
  EXPECT_EQ(r.steps, 12 * 6);
  EXPECT_EQ(r.history.size(), 13u);  // one before training, one per epoch
  const double before = r.history.front()["val_loss"].get<double>();
  EXPECT_EQ(r.history.front()["step"], 0);
  EXPECT_GT(before, 2.0);  // about ln(32) at the start
  const double after = r.val["loss"].get<double>();
  EXPECT_LT(after, 0.6 * before) << before << " -> " << after;
  EXPECT_TRUE(file_exists(cfg.out_dir + "/metrics.jsonl"));
  EXPECT_TRUE(file_exists(cfg.out_dir + "/loss.svg"));
  EXPECT_TRUE(file_exists(cfg.out_dir + "/model.safetensors"));
}

// --trainable last:1 changes the last block and the final LayerNorm only.
TEST(Finetune, LastNLeavesTheRestBitIdentical) {
  GPT m(tiny());
  m.init_gpt2(5);
  std::vector<float> before(m.params(), m.params() + m.num_parameters());
  InstructTask task(copy_task(16, 3), {}, kEot, 31, true, 8);
  FinetuneConfig cfg;
  cfg.max_steps = 3;
  cfg.batch_size = 8;
  cfg.quiet = true;
  cfg.save = false;
  cfg.train = parse_train_selection("last:1", 2);
  dist::Range r = Trainable::select(m, cfg.train).span();
  EXPECT_EQ(r.begin, m.find("h.1.ln_1.weight")->offset);
  finetune(m, nullptr, task, cfg);
  const float* p = m.params();
  EXPECT_EQ(std::memcmp(before.data(), p, r.begin * sizeof(float)), 0);
  size_t changed = 0;
  for (size_t i = r.begin; i < r.end; ++i) changed += before[i] != p[i];
  EXPECT_GT(changed, (r.end - r.begin) / 2);
  EXPECT_THROW(parse_train_selection("last:3", 2), Error);
  EXPECT_THROW(parse_train_selection("some", 2), Error);
}

// --trainable lora: only the adapters train; the saved (and returned) model has them merged in, so the
// projections change and nothing else does; the adapters are saved in PEFT's format.
TEST(Finetune, LoraTrainsAdaptersAndMerges) {
  GPT m(tiny());
  m.init_gpt2(9);
  std::vector<float> before(m.params(), m.params() + m.num_parameters());
  InstructTask task(copy_task(64, 4), copy_task(16, 5), kEot, 31, false, 16);
  FinetuneConfig cfg;
  cfg.epochs = 4;
  cfg.batch_size = 16;
  cfg.schedule.lr = 1e-2f;
  cfg.quiet = true;
  cfg.train = parse_train_selection("lora", 2);
  cfg.lora.r = 4;
  cfg.lora.dropout = 0.0f;
  cfg.out_dir = test::temp_dir("finetune_lora");
  FinetuneResult r = finetune(m, nullptr, task, cfg);
  EXPECT_EQ(m.lora(), nullptr);
  EXPECT_LT(r.val["loss"].get<double>(), r.history.front()["val_loss"].get<double>() - 0.1);
  for (const ParamInfo& p : m.layout()) {
    const bool adapted = p.name.find("c_attn.weight") != std::string::npos ||
                         p.name.find("c_proj.weight") != std::string::npos ||
                         p.name.find("c_fc.weight") != std::string::npos;
    const bool same =
        std::memcmp(before.data() + p.offset, m.params() + p.offset, p.numel * sizeof(float)) == 0;
    EXPECT_EQ(same, !adapted) << p.name;
  }
  EXPECT_TRUE(file_exists(cfg.out_dir + "/adapter_model.safetensors"));
  EXPECT_TRUE(file_exists(cfg.out_dir + "/adapter_config.json"));
  EXPECT_TRUE(file_exists(cfg.out_dir + "/model.safetensors"));
}

}  // namespace
}  // namespace gpt
