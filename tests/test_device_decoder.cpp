// The Decoder (KV-cache generation over a GPT on any backend) against the training
// network's forward pass without a cache (GPT::forward on the CPU backend), run on the staged CPU
// backend (device memory, CPU kernels): logits within 1e-5 and identical greedy tokens over 150
// generated tokens with the context window sliding, on dense, banded, post-LN and bias-free
// shapes; batches of rows at different lengths; row copies and beam reordering; the generator on
// it giving the samples of packed weights on the CPU. The same checks on a GPU (DecoderOnCuda,
// fp32 to 1e-4 and bf16 to 2e-2) skip without one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/staged_backend.h"
#include "core/error.h"
#include "generate/decoder.h"
#include "generate/generator.h"
#include "generate/sampling.h"
#include "model/gpt.h"
#include "model_test_util.h"

namespace gpt {
namespace {

using test::check_copy_and_reorder;
using test::distinct_tokens;
using test::greedy_against_reference;
using test::make_model;
using test::max_diff;
using test::penalised_greedy;
using test::random_tokens;
using test::reference_logits;
using test::shapes;
using test::small;

// The same weights on another backend.
GPT on_backend(const GPT& m, Backend& be) {
  GPT d(m.config(), be);
  std::memcpy(d.params(), m.params(), m.num_parameters() * sizeof(float));
  return d;
}

float max_abs(const float* a, size_t n) {
  float d = 0;
  for (size_t i = 0; i < n; i++) d = std::max(d, std::abs(a[i]));
  return d;
}

void step1(Decoder& dec, int row, TokenId t) {
  dec.step(std::span<const int>(&row, 1), std::span<const TokenId>(&t, 1));
}

// ---- on the staged CPU backend ----------------------------------------------------------------------

TEST(DecoderOnDevice, PrefillLogitsEqualForward) {
  auto all = shapes();
  all.push_back({"long-context", small(2, 2, 16, 150, 53)});  // the head runs in pieces of 64 rows
  for (const auto& sh : all) {
    StagedCpuBackend be;
    GPT m = make_model(sh.cfg, 3);
    GPT d = on_backend(m, be);
    std::mt19937 g(4);
    const int T = sh.cfg.n_ctx, V = sh.cfg.vocab_size;
    const auto ids = random_tokens(g, T, V);
    m.forward(ids.data(), nullptr, 1, T);
    Decoder dec(d, 2);
    std::vector<float> logits(static_cast<size_t>(T) * V);
    dec.prefill(1, ids, logits.data());
    EXPECT_LT(max_diff(logits.data(), m.logits(), logits.size()), 1e-5f) << sh.name;
    EXPECT_EQ(max_diff(dec.logits(1), logits.data() + static_cast<size_t>(T - 1) * V, V), 0.0f) << sh.name;
    EXPECT_EQ(dec.length(1), T);
    // a shorter prompt, last-position logits only
    dec.prefill(0, std::span<const TokenId>(ids.data(), 5));
    m.forward(ids.data(), nullptr, 1, 5);
    EXPECT_LT(max_diff(dec.logits(0), m.logits() + 4 * V, V), 1e-5f) << sh.name;
  }
}

TEST(DecoderOnDevice, CachedGreedyEqualsUncachedOver150TokensWithSlidingWindow) {
  for (const auto& sh : shapes()) {
    StagedCpuBackend be;
    GPT m = make_model(sh.cfg, 5);
    GPT d = on_backend(m, be);
    std::mt19937 g(6);
    const int V = sh.cfg.vocab_size;
    std::vector<TokenId> seq = random_tokens(g, 5, V);
    Decoder dec(d, 1);
    dec.prefill(0, seq);
    const size_t live = be.live_bytes;
    const auto run = greedy_against_reference(dec, m, seq, 150);
    EXPECT_LE(run.longest, sh.cfg.n_ctx) << sh.name;
    EXPECT_LT(run.worst, 1e-5f) << sh.name;
    EXPECT_EQ(run.mismatches, 0) << sh.name;
    EXPECT_GT(dec.rebuilds(), 0u) << sh.name << ": the window should have slid";
    EXPECT_EQ(be.live_bytes, live) << sh.name << ": steps allocate nothing";
    const auto w = dec.window(0);
    EXPECT_TRUE(std::equal(w.begin(), w.end(), seq.end() - w.size())) << sh.name;
    EXPECT_GT(distinct_tokens(seq, 5), 10) << sh.name;
  }
}

TEST(DecoderOnDevice, BatchRowsOfDifferentLengths) {
  for (int s : {0, 1}) {  // dense, and banded (the hardest for positions)
    const auto sh = shapes()[s];
    StagedCpuBackend be;
    GPT m = make_model(sh.cfg, 7);
    GPT d = on_backend(m, be);
    const int V = sh.cfg.vocab_size;
    std::mt19937 g(8);
    std::vector<std::vector<TokenId>> seqs = {random_tokens(g, 3, V), random_tokens(g, 17, V),
                                              random_tokens(g, 40, V)};
    Decoder dec(d, 4);
    const std::vector<int> rows = {2, 0, 3};  // rows need not be 0..n-1
    for (size_t i = 0; i < rows.size(); i++) dec.prefill(rows[i], seqs[i]);
    float worst = 0;
    for (int step = 0; step < 60; step++) {
      std::vector<TokenId> next;
      std::vector<int> stepping;
      for (size_t i = 0; i < rows.size(); i++) {
        const auto ref = reference_logits(m, seqs[i]);
        worst = std::max(worst, max_diff(dec.logits(rows[i]), ref.data(), V));
        if (step % 7 == 3 && i == 1) continue;  // now and then a row sits a step out
        stepping.push_back(rows[i]);
        next.push_back(static_cast<TokenId>((g() % 3 == 0) ? g() % V : greedy_pick(ref)));
        seqs[i].push_back(next.back());
      }
      dec.step(stepping, next);
    }
    EXPECT_LT(worst, 1e-5f) << sh.name;
    EXPECT_GT(dec.rebuilds(), 0u) << sh.name;
  }
}

TEST(DecoderOnDevice, CopyAndReorderRows) {
  const auto sh = shapes()[0];
  StagedCpuBackend be;
  GPT m = make_model(sh.cfg, 9);
  GPT d = on_backend(m, be);
  std::mt19937 g(10);
  Decoder dec(d, 4);
  check_copy_and_reorder(dec, m, g);
}

TEST(DecoderOnDevice, RejectsBadCalls) {
  StagedCpuBackend be;
  GPT m = make_model(shapes()[0].cfg, 1);
  GPT d = on_backend(m, be);
  Decoder dec(d, 2);
  EXPECT_THROW(dec.prefill(0, std::vector<TokenId>{}), Error);
  EXPECT_THROW(dec.prefill(2, std::vector<TokenId>{1}), Error);
  EXPECT_THROW(dec.prefill(0, std::vector<TokenId>{static_cast<TokenId>(d.config().vocab_size)}), Error);
  EXPECT_THROW(step1(dec, 1, 1), Error);  // not prefilled
  dec.prefill(0, std::vector<TokenId>{1, 2});
  const std::vector<int> twice = {0, 0};
  EXPECT_THROW(dec.step(twice, std::vector<TokenId>{1, 2}), Error);
  EXPECT_THROW(Decoder(d, 0), Error);
}

// The generator over a training-storage model on the staged backend gives the samples and beams of
// packed weights on the CPU.
TEST(DecoderOnDevice, GeneratorGivesThePackedDecodersTokens) {
  const auto sh = shapes()[1];
  StagedCpuBackend be;
  GPT m = make_model(sh.cfg, 11);
  GPT d = on_backend(m, be);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  Generator packed(pm);
  Generator device(d);
  std::mt19937 g(12);
  const auto prompt = random_tokens(g, 6, sh.cfg.vocab_size);
  GenerateSettings s;
  s.max_new_tokens = 70;  // past the context of 48: the windows slide
  s.num_samples = 3;
  s.stop_at_eot = false;
  s.sampling.seed = 5;
  s.sampling.top_p = 0.9f;
  s.sampling.repetition_penalty = 1.3f;
  for (int beams : {0, 3}) {
    s.beams = beams;
    if (beams) s.max_new_tokens = 20;
    const auto a = packed.generate(prompt, s), b = device.generate(prompt, s);
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); k++)
      EXPECT_EQ(a[k].ids, b[k].ids) << "beams " << beams << " sample " << k;
  }
}

// ---- on a GPU ---------------------------------------------------------------------------------------

Backend* gpu_or_null(const char* name, std::string& why) {
  if (!cuda_backend_built()) {
    why = "this build has no CUDA backend (the CUDA toolkit was not found at build time)";
    return nullptr;
  }
  try {
    return &backend_for(name);
  } catch (const Error& e) {
    why = e.what();
    return nullptr;
  }
}

// Teacher-forced along the CPU's greedy path (so both see the same tokens): every step's logits
// against the uncached CPU reference, within tol of the largest logit; and the greedy tokens the
// GPU would have picked.
void check_on_gpu(Backend& gpu, float tol, bool exact_tokens) {
  for (const auto& sh : shapes()) {
    SCOPED_TRACE(sh.name);
    GPT m = make_model(sh.cfg, 13);
    GPT d = on_backend(m, gpu);
    std::mt19937 g(14);
    const int V = sh.cfg.vocab_size;
    std::vector<std::vector<TokenId>> seqs = {random_tokens(g, 5, V), random_tokens(g, 30, V)};
    Decoder dec(d, 2);
    const std::vector<int> rows = {0, 1};
    for (int r = 0; r < 2; r++) dec.prefill(r, seqs[r]);
    float worst = 0;
    int mismatches = 0;
    for (int step = 0; step < 100; step++) {
      std::vector<TokenId> next;
      for (int r = 0; r < 2; r++) {
        const auto ref = reference_logits(m, seqs[r]);
        worst = std::max(worst, max_diff(dec.logits(r), ref.data(), V) / max_abs(ref.data(), V));
        const TokenId t = penalised_greedy(ref.data(), V, seqs[r]);
        mismatches += t != penalised_greedy(dec.logits(r), V, seqs[r]);
        next.push_back(t);
        seqs[r].push_back(t);
      }
      dec.step(rows, next);
    }
    EXPECT_LT(worst, tol);
    EXPECT_GT(dec.rebuilds(), 0u);
    if (exact_tokens) {
      EXPECT_EQ(mismatches, 0);
    }
  }
}

TEST(DecoderOnCuda, Fp32MatchesTheCpuTo1e4) {
  std::string why;
  Backend* gpu = gpu_or_null("cuda-fp32", why);
  if (!gpu) GTEST_SKIP() << "no CUDA GPU: " << why;
  check_on_gpu(*gpu, 1e-4f, true);
}

TEST(DecoderOnCuda, Bf16MatchesTheCpuTo2e2) {
  std::string why;
  Backend* gpu = gpu_or_null("cuda", why);
  if (!gpu) GTEST_SKIP() << "no CUDA GPU: " << why;
  check_on_gpu(*gpu, 2e-2f, false);
}

}  // namespace
}  // namespace gpt
