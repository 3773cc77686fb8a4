// Every op's backward against finite differences of its forward, on tiny shapes. Each loss is
// a random projection of the op's output, so every output element's gradient path counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include "core/parallel.h"
#include "grad_check.h"
#include "ops/ops.h"

namespace gpt {
namespace {

using test::expect_gradient;
using test::project;
using test::randn;

TEST(Ops, LayerNormGradients) {
  const int N = 5, C = 12;
  auto x = randn(N * C, 1, 2.0f), w = randn(C, 2), b = randn(C, 3), r = randn(N * C, 4);
  for (int i = 0; i < N * C; i++) x[i] += 3.0f;  // a large mean must not hurt
  std::vector<float> out(N * C), mean(N), rstd(N);
  auto f = [&] {
    ops::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
    return project(out.data(), r);
  };
  f();
  std::vector<float> dx(N * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
  ops::layernorm_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), mean.data(),
                          rstd.data(), N, C);
  expect_gradient("dx", x.data(), x.size(), dx.data(), f, 1e-2f);
  expect_gradient("dw", w.data(), w.size(), dw.data(), f);
  expect_gradient("db", b.data(), b.size(), db.data(), f);
}

TEST(Ops, LayerNormNormalises) {
  const int N = 3, C = 64;
  auto x = randn(N * C, 5, 4.0f);
  std::vector<float> w(C, 1.0f), out(N * C), mean(N), rstd(N);
  ops::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), nullptr, N, C, 1e-5f);
  for (int n = 0; n < N; n++) {
    double s = 0, s2 = 0;
    for (int c = 0; c < C; c++) s += out[n * C + c], s2 += out[n * C + c] * out[n * C + c];
    EXPECT_NEAR(s / C, 0.0, 1e-5);
    EXPECT_NEAR(s2 / C, 1.0, 1e-3);
  }
}

TEST(Ops, LinearGradients) {
  const int N = 6, IC = 5, OC = 7;
  auto x = randn(N * IC, 1), w = randn(IC * OC, 2), b = randn(OC, 3), r = randn(N * OC, 4);
  std::vector<float> out(N * OC);
  auto f = [&] {
    ops::linear_forward(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
    return project(out.data(), r);
  };
  f();
  // forward against a direct loop
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double s = b[o];
      for (int i = 0; i < IC; i++) s += static_cast<double>(x[n * IC + i]) * w[i * OC + o];
      EXPECT_NEAR(out[n * OC + o], s, 1e-5);
    }
  std::vector<float> dx(N * IC, 7.0f), dw(IC * OC, 0.0f), db(OC, 0.0f);
  ops::linear_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, IC, OC);
  expect_gradient("dx", x.data(), x.size(), dx.data(), f);
  expect_gradient("dw", w.data(), w.size(), dw.data(), f);
  expect_gradient("db", b.data(), b.size(), db.data(), f);
  // accumulate = true adds onto dinp
  std::vector<float> dx2(N * IC, 1.0f);
  ops::linear_backward(dx2.data(), nullptr, nullptr, r.data(), x.data(), w.data(), N, IC, OC, true);
  for (int i = 0; i < N * IC; i++) EXPECT_NEAR(dx2[i], dx[i] + 1.0f, 1e-5);
}

TEST(Ops, LmHeadGradients) {
  const int N = 4, C = 6, V = 9;
  auto x = randn(N * C, 1), wte = randn(V * C, 2), r = randn(N * V, 3);
  std::vector<float> logits(N * V);
  auto f = [&] {
    ops::lm_head_forward(logits.data(), x.data(), wte.data(), N, C, V);
    return project(logits.data(), r);
  };
  f();
  std::vector<float> dx(N * C), dwte(V * C, 0.0f);
  ops::lm_head_backward(dx.data(), dwte.data(), r.data(), x.data(), wte.data(), N, C, V);
  expect_gradient("dx", x.data(), x.size(), dx.data(), f);
  expect_gradient("dwte", wte.data(), wte.size(), dwte.data(), f);
}

TEST(Ops, EmbeddingGradients) {
  const int B = 2, T = 4, C = 3, V = 5;
  std::vector<TokenId> ids = {1, 3, 1, 0, 4, 4, 2, 1};  // repeats: accumulation must add
  auto wte = randn(V * C, 1), wpe = randn(T * C, 2), r = randn(B * T * C, 3);
  std::vector<float> out(B * T * C);
  auto f = [&] {
    ops::embedding_forward(out.data(), ids.data(), wte.data(), wpe.data(), B, T, C);
    return project(out.data(), r);
  };
  f();
  std::vector<float> dwte(V * C, 0.0f), dwpe(T * C, 0.0f);
  ops::embedding_backward(dwte.data(), dwpe.data(), r.data(), ids.data(), B, T, C);
  expect_gradient("dwte", wte.data(), wte.size(), dwte.data(), f);
  expect_gradient("dwpe", wpe.data(), wpe.size(), dwpe.data(), f);
}

TEST(Ops, GeluMatchesTanhFormulaAndGradient) {
  auto x = randn(200, 1, 3.0f), r = randn(200, 2);
  std::vector<float> out(200);
  auto f = [&] {
    ops::gelu_forward(out.data(), x.data(), x.size());
    return project(out.data(), r);
  };
  f();
  for (size_t i = 0; i < x.size(); i++) {
    const double v = x[i];
    const double ref = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    EXPECT_NEAR(out[i], ref, 2e-6 * (1 + std::fabs(ref))) << "x = " << v;
  }
  std::vector<float> dx(200);
  ops::gelu_backward(dx.data(), x.data(), r.data(), x.size());
  expect_gradient("dx", x.data(), x.size(), dx.data(), f, 1e-3f, 2e-2, 200);
}

// The attention op alone, for dense and banded masks, with and without dropout.
void check_attention(int B, int T, int C, int H, int band, float p) {
  auto qkv = randn(static_cast<size_t>(B) * T * 3 * C, 11), r = randn(static_cast<size_t>(B) * T * C, 12);
  std::vector<float> out(B * T * C), att(static_cast<size_t>(B) * H * T * T);
  std::vector<float> scratch(ops::attention_scratch_floats(T));
  const ops::Dropout drop{p, 1234};
  auto f = [&] {
    ops::attention_forward(out.data(), att.data(), scratch.data(), qkv.data(), B, T, C, H, band, drop);
    return project(out.data(), r);
  };
  f();
  std::vector<float> dqkv(qkv.size(), 9.0f);
  ops::attention_backward(dqkv.data(), scratch.data(), r.data(), qkv.data(), att.data(), B, T, C, H, band,
                          drop);
  expect_gradient("dqkv", qkv.data(), qkv.size(), dqkv.data(), f, 1e-2f, 2e-2, 400);
}

TEST(Ops, AttentionDenseGradients) { check_attention(2, 5, 8, 2, 0, 0.0f); }
TEST(Ops, AttentionBandedGradients) { check_attention(2, 7, 6, 3, 2, 0.0f); }
TEST(Ops, AttentionDropoutGradients) { check_attention(1, 6, 8, 2, 0, 0.3f); }
// Longer than one query block (ops::kAttnBlock): blocks see keys of earlier blocks.
TEST(Ops, AttentionMultiBlockGradients) {
  check_attention(1, ops::kAttnBlock + 9, 4, 2, 0, 0.0f);
  check_attention(1, ops::kAttnBlock + 9, 4, 2, 5, 0.1f);
}

// Causality: changing a later token's k or v never changes an earlier output, and banded
// attention ignores keys more than W-1 positions back.
TEST(Ops, AttentionMasks) {
  const int T = 8, C = 4, H = 1, W = 3;
  for (int band : {0, W}) {
    auto qkv = randn(T * 3 * C, 21);
    std::vector<float> a(T * C), b(T * C), scratch(ops::attention_scratch_floats(T));
    ops::attention_forward(a.data(), nullptr, scratch.data(), qkv.data(), 1, T, C, H, band, {});
    const int j = 2;  // perturb position 2's key and value
    for (int c = C; c < 3 * C; c++) qkv[j * 3 * C + c] += 1.0f;
    ops::attention_forward(b.data(), nullptr, scratch.data(), qkv.data(), 1, T, C, H, band, {});
    for (int i = 0; i < T; i++) {
      const bool sees = i >= j && (band == 0 || i - band < j);
      double diff = 0;
      for (int c = 0; c < C; c++) diff += std::fabs(a[i * C + c] - b[i * C + c]);
      if (sees)
        EXPECT_GT(diff, 1e-4) << "query " << i << " should see key " << j << " (band " << band << ")";
      else
        EXPECT_EQ(diff, 0.0) << "query " << i << " must not see key " << j << " (band " << band << ")";
    }
  }
}

TEST(Ops, AttentionInferenceMatchesTraining) {
  const int B = 2, T = 6, C = 8, H = 2;
  auto qkv = randn(B * T * 3 * C, 31);
  std::vector<float> a(B * T * C), b(B * T * C), att(B * H * T * T),
      scratch(ops::attention_scratch_floats(T));
  ops::attention_forward(a.data(), att.data(), scratch.data(), qkv.data(), B, T, C, H, 0, {});
  ops::attention_forward(b.data(), nullptr, scratch.data(), qkv.data(), B, T, C, H, 0, {});
  EXPECT_EQ(a, b);
}

TEST(Ops, ResidualDropoutGradients) {
  const size_t n = 300;
  auto a = randn(n, 1), b = randn(n, 2), r = randn(n, 3);
  std::vector<float> out(n);
  const ops::Dropout drop{0.25f, 77};
  auto f = [&] {
    ops::residual_forward(out.data(), a.data(), b.data(), n, drop);
    return project(out.data(), r);
  };
  f();
  size_t dropped = 0;
  for (size_t i = 0; i < n; i++) dropped += out[i] == a[i];
  EXPECT_GT(dropped, n / 8);
  EXPECT_LT(dropped, n / 2);
  std::vector<float> db(n);
  ops::dropout_backward(db.data(), r.data(), n, drop);
  expect_gradient("db", b.data(), n, db.data(), f, 1e-2f, 2e-2, n);
  // the same mask for any thread count: dropout_forward alone agrees with residual_forward
  f();  // the finite differences left `out` at a perturbed input
  std::vector<float> c = b;
  ops::dropout_forward(c.data(), n, drop);
  for (size_t i = 0; i < n; i++)
    EXPECT_NEAR(out[i], a[i] + c[i], 1e-6f * (1 + std::fabs(out[i])));  // FMA or not
}

TEST(Ops, CrossEntropyGradientsAndValue) {
  const int N = 4, V = 7;
  auto logits = randn(N * V, 1, 3.0f);
  std::vector<int32_t> targets = {3, -1, 0, 6};
  std::vector<float> losses(N), lse(N);
  auto f = [&] {
    return ops::cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), N, V);
  };
  const double total = f();
  double expect = 0;
  for (int n = 0; n < N; n++) {
    if (targets[n] < 0) {
      EXPECT_EQ(losses[n], 0.0f);
      continue;
    }
    double z = 0;
    for (int v = 0; v < V; v++) z += std::exp(static_cast<double>(logits[n * V + v]));
    const double l = std::log(z) - logits[n * V + targets[n]];
    EXPECT_NEAR(losses[n], l, 1e-5);
    expect += l;
  }
  EXPECT_NEAR(total, expect, 1e-5);
  std::vector<float> d = logits;
  ops::cross_entropy_backward(d.data(), lse.data(), targets.data(), N, V, 1.0f);
  expect_gradient("dlogits", logits.data(), logits.size(), d.data(), f, 1e-2f);
  for (int v = 0; v < V; v++) EXPECT_EQ(d[1 * V + v], 0.0f);  // the ignored row
}

TEST(Ops, AdamWMatchesTheFormula) {
  std::vector<float> p = {1.0f, -2.0f}, g = {0.5f, -0.25f}, m = {0.1f, 0.0f}, v = {0.01f, 0.0f};
  ops::AdamWStep s{0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f - 0.81f, 1.0f - 0.9025f};  // step t = 2
  auto p0 = p;
  ops::adamw_update(p.data(), g.data(), m.data(), v.data(), 2, s);
  for (int i = 0; i < 2; i++) {
    const double mi = 0.9 * (i == 0 ? 0.1 : 0.0) + 0.1 * g[i];
    const double vi = 0.95 * (i == 0 ? 0.01 : 0.0) + 0.05 * g[i] * g[i];
    const double step = (mi / (1 - 0.81)) / (std::sqrt(vi / (1 - 0.9025)) + 1e-8) + 0.1 * p0[i];
    EXPECT_NEAR(m[i], mi, 1e-7);
    EXPECT_NEAR(v[i], vi, 1e-7);
    EXPECT_NEAR(p[i], p0[i] - 0.1 * step, 1e-6);
  }
}

}  // namespace
}  // namespace gpt
