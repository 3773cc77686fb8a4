// Small models and checks shared by the model, decoder and attention tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "generate/sampling.h"
#include "grad_check.h"
#include "model/gpt.h"

namespace gpt::test {

inline ModelConfig small(int L, int H, int C, int T, int V) {
  ModelConfig c;
  c.n_layer = L;
  c.n_head = H;
  c.n_embd = C;
  c.n_ctx = T;
  c.vocab_size = V;
  return c;
}

struct Shape {
  const char* name;
  ModelConfig cfg;
};

// The decoders' model shapes: GPT-2 like, GPT-3's banded layers, GPT-1's post-LN, no biases.
inline std::vector<Shape> shapes() {
  std::vector<Shape> s;
  s.push_back({"gpt2-like", small(2, 4, 32, 48, 101)});
  ModelConfig banded = small(4, 4, 32, 48, 101);  // GPT-3's layout: odd layers banded
  banded.attention = AttentionKind::AlternatingBanded;
  banded.band = 8;
  s.push_back({"gpt3-banded", banded});
  ModelConfig post = small(2, 2, 24, 40, 97);  // GPT-1: post-LN, no final LayerNorm
  post.ln = LnPlacement::Post;
  s.push_back({"gpt1-post-ln", post});
  ModelConfig plain = small(3, 4, 32, 48, 89);
  plain.bias = false;
  plain.tied_head = false;
  s.push_back({"no-bias-untied", plain});
  return s;
}

// GPT-2 initialisation, then every bias and LayerNorm parameter perturbed by N(0, noise) (they
// start at 0 and 1, which would hide mistakes in their use), and the parameters big(name) picks
// scaled by `scale` (decisive logits, attention far from uniform).
template <class Big>
GPT perturbed_model(const ModelConfig& cfg, uint64_t seed, float noise, float scale, Big&& big) {
  GPT m(cfg);
  m.init_gpt2(seed);
  std::mt19937 g(static_cast<uint32_t>(seed));
  std::normal_distribution<float> n(0.0f, noise);
  for (const auto& p : m.layout()) {
    float* x = m.params() + p.offset;
    const bool vec = p.shape.size() == 1;
    const bool emb = big(p.name);
    for (size_t i = 0; i < p.numel; i++) {
      if (vec) x[i] += n(g);
      if (emb) x[i] *= scale;
    }
  }
  return m;
}

// The decoders' test model: biases and LayerNorms perturbed, embeddings 8 times larger.
inline GPT make_model(const ModelConfig& cfg, uint64_t seed) {
  return perturbed_model(cfg, seed, 0.1f, 8.0f,
                         [](const std::string& n) { return n == "wte.weight" || n == "lm_head.weight"; });
}

// A copy of m with its matrices packed in `type`, on `backend`: the inference model of the same weights.
inline GPT packed_copy(const GPT& m, ops::WeightType type, Backend& backend = cpu_backend()) {
  GPT p(m.config(), backend);
  std::copy(m.params(), m.params() + m.num_parameters(), p.params());
  p.pack(type);
  return p;
}

// Logits of the last position of GPT::forward on the last n_ctx tokens: the uncached reference.
inline std::vector<float> reference_logits(GPT& m, const std::vector<TokenId>& seq) {
  const int n_ctx = m.config().n_ctx, V = m.config().vocab_size;
  const size_t start = seq.size() > static_cast<size_t>(n_ctx) ? seq.size() - n_ctx : 0;
  const int T = static_cast<int>(seq.size() - start);
  m.forward(seq.data() + start, nullptr, 1, T);
  const float* l = m.logits() + static_cast<size_t>(T - 1) * V;
  return std::vector<float>(l, l + V);
}

inline float max_diff(const float* a, const float* b, size_t n) {
  float d = 0;
  for (size_t i = 0; i < n; i++) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// Greedy with a repetition penalty over the last 16 tokens: a randomly initialised model's plain
// greedy output soon repeats one token, which would prove little.
inline TokenId penalised_greedy(const float* logits, int V, const std::vector<TokenId>& seq) {
  std::vector<float> l(logits, logits + V);
  const size_t from = seq.size() > 16 ? seq.size() - 16 : 0;
  apply_repetition_penalty(l, std::span<const TokenId>(seq.data() + from, seq.size() - from), 4.0f);
  return greedy_pick(l);
}

inline std::vector<TokenId> random_tokens(std::mt19937& g, int n, int V) {
  std::vector<TokenId> t(n);
  for (auto& x : t) x = g() % V;
  return t;
}

// Greedy decoding (penalised_greedy) on row 0 of a decoder prefilled with seq, for `steps` tokens
// appended to seq, each step's logits against the uncached reference_logits of m.
struct GreedyRun {
  float worst = 0;     // the largest logit difference
  int mismatches = 0;  // steps where the reference would have picked another token
  int longest = 0;     // the row's longest length (never above n_ctx)
};
template <class Dec>
GreedyRun greedy_against_reference(Dec& dec, GPT& m, std::vector<TokenId>& seq, int steps) {
  const int V = m.config().vocab_size, row = 0;
  GreedyRun r;
  for (int step = 0; step < steps; step++) {
    const auto ref = reference_logits(m, seq);
    r.worst = std::max(r.worst, max_diff(dec.logits(row), ref.data(), V));
    const TokenId a = penalised_greedy(dec.logits(row), V, seq);
    r.mismatches += a != penalised_greedy(ref.data(), V, seq);
    seq.push_back(a);
    dec.step(std::span<const int>(&row, 1), std::span<const TokenId>(&a, 1));
    r.longest = std::max(r.longest, dec.length(row));
  }
  return r;
}

// How many distinct tokens seq has from `from` on: a degenerate model repeating one token would
// prove little.
inline long distinct_tokens(const std::vector<TokenId>& seq, size_t from) {
  std::vector<TokenId> uniq(seq.begin() + from, seq.end());
  std::sort(uniq.begin(), uniq.end());
  return std::unique(uniq.begin(), uniq.end()) - uniq.begin();
}

// Rows 0..3 of a decoder (4 rows) prefilled with random prompts of 4, 7, 10 and 13 tokens, a row
// copy, then beam-like reorders with duplicated and dropped parents, each followed by a step on
// every new row: logits within 1e-5 of the uncached reference of m, windows the sequences' ends.
template <class Dec>
void check_copy_and_reorder(Dec& dec, GPT& m, std::mt19937& g) {
  const int V = m.config().vocab_size;
  std::vector<std::vector<TokenId>> seqs(4);
  for (int r = 0; r < 4; r++) {
    seqs[r] = random_tokens(g, 4 + 3 * r, V);
    dec.prefill(r, seqs[r]);
  }
  dec.copy_row(3, 1);
  seqs[3] = seqs[1];
  EXPECT_EQ(max_diff(dec.logits(3), dec.logits(1), V), 0.0f);
  for (const std::vector<int>& parents : {std::vector<int>{1, 1, 0, 1}, std::vector<int>{3, 2, 2},
                                          std::vector<int>{0, 0, 0}, std::vector<int>{2, 0, 1}}) {
    std::vector<std::vector<TokenId>> next(parents.size());
    std::vector<TokenId> toks;
    std::vector<int> rows;
    for (size_t i = 0; i < parents.size(); i++) {
      next[i] = seqs[parents[i]];
      toks.push_back(g() % V);
      next[i].push_back(toks.back());
      rows.push_back(static_cast<int>(i));
    }
    dec.reorder(parents);
    dec.step(rows, toks);
    seqs = next;
    for (size_t i = 0; i < seqs.size(); i++) {
      const auto ref = reference_logits(m, seqs[i]);
      EXPECT_LT(max_diff(dec.logits(static_cast<int>(i)), ref.data(), V), 1e-5f) << "row " << i;
      const auto w = dec.window(static_cast<int>(i));
      EXPECT_TRUE(std::equal(w.begin(), w.end(), seqs[i].end() - w.size()));
    }
  }
}

// Random weights big enough that every path carries gradient; LayerNorm gains near 1.
inline void randomize(GPT& m, uint64_t seed) {
  auto r = randn(m.num_parameters(), seed, 0.3f);
  std::copy(r.begin(), r.end(), m.params());
  for (const auto& p : m.layout())
    if (p.name.find("ln_") != std::string::npos && p.name.ends_with(".weight"))
      for (size_t i = 0; i < p.numel; i++) m.params()[p.offset + i] += 1.0f;
}

// Two rows of six tokens with next-token targets (one ignored, -1), for the tiny models.
struct Batch {
  int B = 2, T = 6;
  std::vector<TokenId> x = {1, 4, 7, 2, 10, 3, 0, 0, 5, 9, 1, 8};
  std::vector<int32_t> y = {4, 7, 2, 10, 3, -1, 0, 5, 9, 1, 8, 6};
};

}  // namespace gpt::test
