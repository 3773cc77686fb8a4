// Training budgets (train/budget.h): the activation plan counted without a model equals what a
// training forward allocates; FLOPs, memory and time follow from their definitions; the
// compute-optimal split inverts C = 6 N D with D = 20 N; GPT-2's published 117M is its 124M with
// GPT-1's vocabulary.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "model/gpt.h"
#include "train/budget.h"
#include "train/step_bench.h"

namespace gpt {
namespace {

ModelConfig small(LnPlacement ln = LnPlacement::Pre, AttentionKind att = AttentionKind::Dense) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.n_ctx = 64;
  c.vocab_size = 300;
  c.ln = ln;
  c.attention = att;
  c.band = 8;
  return c;
}

TEST(Budget, PlannedActivationsAreWhatATrainingForwardAllocates) {
  for (const ModelConfig& c :
       {small(), small(LnPlacement::Post), small(LnPlacement::Pre, AttentionKind::AlternatingBanded)}) {
    for (auto [B, T] : {std::pair{1, 8}, std::pair{3, 64}}) {
      GPT m(c);
      m.init_gpt2(1);
      std::mt19937 g(1);
      std::vector<TokenId> x(static_cast<size_t>(B) * T);
      std::vector<int32_t> y(x.size());
      for (size_t i = 0; i < x.size(); i++) {
        x[i] = g() % c.vocab_size;
        y[i] = static_cast<int32_t>(g() % c.vocab_size);
      }
      m.forward(x.data(), y.data(), B, T, true);
      EXPECT_EQ(GPT::planned_activation_bytes(c, cpu_backend(), B, T, true), m.activation_bytes())
          << B << "x" << T;
      EXPECT_GT(m.activation_bytes(), 0u);
    }
  }
}

TEST(Budget, FlopsMemoryAndTimeFromTheirDefinitions) {
  const ModelConfig c = small();
  BudgetOptions o;
  o.batch = 3;
  o.seq = 32;
  TrainingBudget b = training_budget(c, cpu_backend(), o);
  EXPECT_TRUE(b.tokens_by_rule);
  EXPECT_DOUBLE_EQ(b.tokens, 20.0 * static_cast<double>(c.num_parameters()));
  EXPECT_DOUBLE_EQ(b.flops_per_token, c.train_flops_per_token(32));
  EXPECT_DOUBLE_EQ(b.flops, b.flops_per_token * b.tokens);
  EXPECT_EQ(b.weight_bytes, c.num_parameters() * 4);
  EXPECT_EQ(b.gradient_bytes, b.weight_bytes);
  EXPECT_EQ(b.optimizer_bytes, 2 * b.weight_bytes);
  EXPECT_EQ(b.activation_bytes, GPT::planned_activation_bytes(c, cpu_backend(), 3, 32, true));
  EXPECT_EQ(b.seconds, 0.0);
  o.tokens = 1e6;
  o.tokens_per_s = 2500;
  b = training_budget(c, cpu_backend(), o);
  EXPECT_FALSE(b.tokens_by_rule);
  EXPECT_DOUBLE_EQ(b.seconds, 400.0);
  // The optimizer's real state is the two moments counted here (a step's measured memory).
  StepBenchOptions so;
  so.batch = 3;
  so.seq = 32;
  so.steps = 1;
  so.warmup = 0;
  const StepBenchResult r = bench_train_step(c, cpu_backend(), so);
  EXPECT_EQ(r.optimizer_bytes, b.optimizer_bytes);
  EXPECT_EQ(r.activation_bytes, b.activation_bytes);
  EXPECT_GT(r.tokens_per_s, 0);
  o.seq = 65;  // beyond the context
  EXPECT_THROW(training_budget(c, cpu_backend(), o), Error);
  o.seq = 0;
  o.tokens = -1;
  EXPECT_THROW(training_budget(c, cpu_backend(), o), Error);
}

TEST(Budget, ComputeOptimalInvertsSixNDWithTwentyTokensPerParameter) {
  for (double n : {1.24e8, 7e10}) {
    const double C = 6.0 * n * 20.0 * n;
    const ComputeOptimal o = compute_optimal(C);
    EXPECT_NEAR(o.parameters / n, 1.0, 1e-12);
    EXPECT_NEAR(o.tokens / (20.0 * n), 1.0, 1e-12);
  }
  EXPECT_THROW(compute_optimal(0), Error);
  EXPECT_THROW(compute_optimal(-1), Error);
}

TEST(Budget, PublishedGpt2SizesAreTheirCountsWithGpt1sVocabulary) {
  // 117M, 345M, 762M, 1542M: every published GPT-2 size is its checkpoint's count with 9,779 fewer
  // vocabulary rows (50,257 -> 40,478, GPT-1's vocabulary) in the tied embedding.
  const std::pair<const char*, double> published[] = {
      {"gpt2", 117e6}, {"gpt2-medium", 345e6}, {"gpt2-large", 762e6}, {"gpt2-xl", 1542e6}};
  for (const auto& [name, count] : published) {
    ModelConfig c = preset_config(name);
    const double real = static_cast<double>(c.num_parameters());
    c.vocab_size = 40478;
    EXPECT_NEAR(static_cast<double>(c.num_parameters()), count, 0.5e6) << name;
    EXPECT_GT(real - count, 7e6) << name;  // and the checkpoints really are larger
  }
}

}  // namespace
}  // namespace gpt
