// The engine's thread count: results do not depend on it, and the team-size arithmetic that
// adapt_threads() applies on a shared machine (core/parallel.h, docs/threads.md).
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "generate/decoder.h"
#include "model_test_util.h"
#include "ops/ops.h"

namespace gpt {
namespace {

using test::make_model;
using test::small;

// Runs f with a team of n threads under a ceiling of 3 (what adapt_threads() does on a busy
// machine), then restores the ceiling.
template <class F>
auto with_threads(int n, F&& f) {
  const int before = num_threads();
  set_num_threads(3);
  set_active_threads(n);
  auto r = f();
  set_num_threads(before);
  return r;
}

struct StepResult {
  float loss;
  std::vector<float> logits, grads;
};

StepResult train_step(const ModelConfig& cfg, int B, int T) {
  GPT m = make_model(cfg, 5);
  std::vector<TokenId> ids(static_cast<size_t>(B) * T);
  std::vector<int32_t> targets(ids.size());
  for (size_t i = 0; i < ids.size(); i++) {
    ids[i] = static_cast<TokenId>((i * 7919 + 13) % cfg.vocab_size);
    targets[i] = static_cast<int32_t>((i * 104729 + 7) % cfg.vocab_size);
  }
  StepResult r;
  r.loss = m.forward(ids.data(), targets.data(), B, T, true, 99);
  r.logits.assign(m.logits(), m.logits() + ids.size() * cfg.vocab_size);
  m.zero_grad();
  m.backward();
  r.grads.assign(m.grads(), m.grads() + m.num_parameters());
  return r;
}

// A forward and backward with teams of 1, 2 and 3 threads give the same bits. The shapes reach every
// GEMM route: the MLP's dX with an inner dimension of 4C = 1024 (OpenBLAS, in tiles of rows, and
// with 4 rows, in tiles of columns), the LM head's dX for a few rows over 3001 tokens (oneDNN on
// one thread), everything else on oneDNN's own threads; and dropout.
TEST(Threads, TrainingStepDoesNotDependOnTheTeamSize) {
  ModelConfig cfg = small(2, 4, 256, 32, 3001);
  cfg.dropout = 0.1f;
  for (auto [B, T] : {std::pair{2, 32}, std::pair{1, 4}}) {
    const StepResult one = with_threads(1, [&] { return train_step(cfg, B, T); });
    for (int n : {2, 3}) {
      const StepResult r = with_threads(n, [&] { return train_step(cfg, B, T); });
      EXPECT_EQ(std::memcmp(&r.loss, &one.loss, sizeof(float)), 0) << n << " threads, B " << B << " T " << T;
      ASSERT_EQ(r.logits.size(), one.logits.size());
      EXPECT_EQ(std::memcmp(r.logits.data(), one.logits.data(), r.logits.size() * sizeof(float)), 0)
          << "logits, " << n << " threads, B " << B << " T " << T;
      size_t first = r.grads.size();
      for (size_t i = 0; i < r.grads.size() && first == r.grads.size(); i++)
        if (std::memcmp(&r.grads[i], &one.grads[i], sizeof(float)) != 0) first = i;
      EXPECT_EQ(first, r.grads.size()) << "gradients differ from index " << first << ", " << n << " threads, B "
                                       << B << " T " << T;
    }
  }
}

TEST(Threads, SumOfSquaresDoesNotDependOnTheTeamSize) {
  std::vector<float> x(1'000'003);
  for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  const double one = with_threads(1, [&] { return ops::sum_squares(x.data(), x.size()); });
  for (int n : {2, 3}) EXPECT_EQ(with_threads(n, [&] { return ops::sum_squares(x.data(), x.size()); }), one);
}

// The packed-weight decoder: prefill (in chunks long enough for the GEMM route) and steps.
TEST(Threads, DecodingDoesNotDependOnTheTeamSize) {
  const ModelConfig cfg = small(2, 4, 256, 48, 3001);
  const GPT m = make_model(cfg, 7);
  std::vector<TokenId> prompt(40);
  for (size_t i = 0; i < prompt.size(); i++) prompt[i] = static_cast<TokenId>((i * 31 + 5) % cfg.vocab_size);
  for (auto type : {ops::WeightType::F32, ops::WeightType::BF16, ops::WeightType::Q8}) {
    GPT pm = test::packed_copy(m, type);
    auto run = [&] {
      Decoder d(pm, 2, 16);
      d.prefill(0, prompt);
      d.prefill(1, std::span<const TokenId>(prompt).first(9));
      const int rows[2] = {0, 1};
      const TokenId next[2] = {11, 12};
      d.step(rows, next);
      std::vector<float> out(d.logits(0), d.logits(0) + cfg.vocab_size);
      out.insert(out.end(), d.logits(1), d.logits(1) + cfg.vocab_size);
      return out;
    };
    const std::vector<float> one = with_threads(1, run);
    for (int n : {2, 3}) {
      const std::vector<float> r = with_threads(n, run);
      EXPECT_EQ(std::memcmp(r.data(), one.data(), r.size() * sizeof(float)), 0)
          << ops::weight_type_name(type) << ", " << n << " threads";
    }
  }
}

// adapt_threads()' arithmetic: the team takes the CPUs others leave free, shrinks at once, and
// grows only when a whole CPU more is clearly free.
TEST(Threads, TeamSizeFollowsTheFreeCpus) {
  EXPECT_EQ(adapted_team_size(2, 0.0, 2, 2), 2);    // idle
  EXPECT_EQ(adapted_team_size(2, 0.05, 2, 2), 2);   // kernel noise
  EXPECT_EQ(adapted_team_size(2, 0.67, 2, 2), 1);   // a busy loop sharing our two cores
  EXPECT_EQ(adapted_team_size(2, 1.0, 1, 2), 1);    // ... and once we gave it a core
  EXPECT_EQ(adapted_team_size(2, 1.33, 1, 2), 1);   // two spinning threads of another program
  EXPECT_EQ(adapted_team_size(2, 2.0, 2, 2), 1);    // never below one
  EXPECT_EQ(adapted_team_size(2, 0.5, 1, 2), 1);    // half a CPU free: not enough to grow
  EXPECT_EQ(adapted_team_size(2, 0.2, 1, 2), 2);    // the other program stopped
  EXPECT_EQ(adapted_team_size(8, 2.1, 8, 8), 6);    // bigger machines: what is free
  EXPECT_EQ(adapted_team_size(8, 0.0, 3, 4), 4);    // never above the ceiling
  EXPECT_EQ(adapted_team_size(8, 0.0, 2, 1), 1);
}

// The governor never leaves the ceiling's bounds, and the ceiling is what sizes buffers.
TEST(Threads, AdaptStaysWithinTheCeiling) {
  const int before = num_threads();
  set_num_threads(2);
  for (int i = 0; i < 3; i++) {
    adapt_threads();
    EXPECT_GE(active_threads(), 1);
    EXPECT_LE(active_threads(), 2);
    EXPECT_EQ(num_threads(), 2);
  }
  set_num_threads(before);
  EXPECT_EQ(active_threads(), before);
}

}  // namespace
}  // namespace gpt
