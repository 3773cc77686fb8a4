// Samplers, the UTF-8 stream and beam search, each against values worked out independently:
// hand-computed filter sets, a chi-square goodness-of-fit test of sampled frequencies, brute-force
// enumeration of every sequence a crafted model can produce.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "generate/beam.h"
#include "generate/sampling.h"
#include "generate/utf8_stream.h"

using namespace gpt;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> logits_of(std::initializer_list<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -kInf);
  return l;
}

std::set<int> kept(const std::vector<float>& l) {
  std::set<int> s;
  for (size_t i = 0; i < l.size(); i++)
    if (l[i] > -kInf) s.insert(static_cast<int>(i));
  return s;
}

std::vector<float> random_logits(std::mt19937& g, int V, float scale = 3.0f) {
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<float> l(V);
  for (auto& x : l) x = n(g);
  return l;
}

// Pearson's chi-square statistic of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probs) {
  double n = 0;
  for (int c : counts) n += c;
  double x2 = 0;
  for (size_t i = 0; i < counts.size(); i++) {
    if (probs[i] == 0) {
      if (counts[i] > 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    const double e = n * probs[i];
    x2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x2;
}

// Upper critical values of the chi-square distribution at p = 0.001 by degrees of freedom
// (standard tables, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.4).
double chi2_critical_0001(int df) {
  static const std::map<int, double> table = {{1, 10.828}, {2, 13.816}, {3, 16.266}, {4, 18.467},
                                              {5, 20.515}, {6, 22.458}, {7, 24.322}, {8, 26.125},
                                              {9, 27.877}, {10, 29.588}};
  return table.at(df);
}

}  // namespace

// ---- the pieces ---------------------------------------------------------------------------------

TEST(Sampling, RepetitionPenaltyFollowsCtrl) {
  std::vector<float> l = {2.0f, -2.0f, 0.0f, 3.0f, -1.0f};
  const std::vector<TokenId> ctx = {0, 1, 2, 1, 1, 0};  // repeats are penalised once
  apply_repetition_penalty(l, ctx, 2.0f);
  EXPECT_FLOAT_EQ(l[0], 1.0f);   // positive: divided
  EXPECT_FLOAT_EQ(l[1], -4.0f);  // negative: multiplied
  EXPECT_FLOAT_EQ(l[2], 0.0f);   // zero stays zero
  EXPECT_FLOAT_EQ(l[3], 3.0f);   // not in the context
  EXPECT_FLOAT_EQ(l[4], -1.0f);
  std::vector<float> m = {2.0f, -2.0f};
  apply_repetition_penalty(m, std::vector<TokenId>{0, 1}, 0.5f);  // r < 1 encourages repeats
  EXPECT_FLOAT_EQ(m[0], 4.0f);
  EXPECT_FLOAT_EQ(m[1], -1.0f);
}

TEST(Sampling, TemperatureDivides) {
  std::vector<float> l = {1.0f, -3.0f, 0.5f};
  apply_temperature(l, 0.5f);
  EXPECT_FLOAT_EQ(l[0], 2.0f);
  EXPECT_FLOAT_EQ(l[1], -6.0f);
  EXPECT_FLOAT_EQ(l[2], 1.0f);
}

TEST(Sampling, GreedyTakesTheLowestIdAmongEqualMaxima) {
  EXPECT_EQ(greedy_pick(std::vector<float>{1, 5, 3, 5}), 1u);
  EXPECT_EQ(greedy_pick(std::vector<float>{-kInf, -2, -1}), 2u);
}

TEST(Sampling, TopKKeepsExactlyKRankedByLogitThenId) {
  const std::vector<float> base = {1, 5, 3, 5, 2};
  auto run = [&](int k) {
    auto l = base;
    top_k_filter(l, k);
    return kept(l);
  };
  EXPECT_EQ(run(1), (std::set<int>{1}));  // the tie at 5 goes to the lower id
  EXPECT_EQ(run(2), (std::set<int>{1, 3}));
  EXPECT_EQ(run(3), (std::set<int>{1, 2, 3}));
  EXPECT_EQ(run(0), (std::set<int>{0, 1, 2, 3, 4}));  // off
  EXPECT_EQ(run(9), (std::set<int>{0, 1, 2, 3, 4}));
  auto l = base;  // values of the kept tokens are untouched
  top_k_filter(l, 2);
  EXPECT_EQ(l[1], 5.0f);
  EXPECT_EQ(l[3], 5.0f);
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  auto run = [](std::initializer_list<double> probs, float p) {
    auto l = logits_of(probs);
    top_p_filter(l, p);
    return kept(l);
  };
  // 0.5, 0.3, 0.2 (given out of order to check the ranking)
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 0.5f), (std::set<int>{1}));  // reached exactly by one
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 0.49f), (std::set<int>{1}));
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 0.51f), (std::set<int>{1, 2}));
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 0.8f), (std::set<int>{1, 2}));  // exactly 0.8 reached by two
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 0.81f), (std::set<int>{0, 1, 2}));
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 1.0f), (std::set<int>{0, 1, 2}));
  EXPECT_EQ(run({0.2, 0.5, 0.3}, 1e-6f), (std::set<int>{1}));  // at least one token stays
  // Ties: 0.4 then three of 0.2; equal probabilities are taken lower id first.
  EXPECT_EQ(run({0.2, 0.2, 0.4, 0.2}, 0.6f), (std::set<int>{0, 2}));
  EXPECT_EQ(run({0.2, 0.2, 0.4, 0.2}, 0.61f), (std::set<int>{0, 1, 2}));
  EXPECT_EQ(run({0.2, 0.2, 0.4, 0.2}, 0.9f), (std::set<int>{0, 1, 2, 3}));
  // Already-filtered tokens stay filtered and do not count.
  EXPECT_EQ(run({0.0, 0.5, 0.25, 0.25}, 0.7f), (std::set<int>{1, 2}));
}

TEST(Sampling, TopPMatchesASortedReferenceOnLargeVocabularies) {
  // The partial sort grows in steps; compare with a full sort on a 5000-token vocabulary.
  std::mt19937 g(11);
  for (float p : {0.1f, 0.5f, 0.9f, 0.99f}) {
    auto l = random_logits(g, 5000, 0.5f);
    std::vector<int> ids(l.size());
    for (size_t i = 0; i < ids.size(); i++) ids[i] = static_cast<int>(i);
    std::sort(ids.begin(), ids.end(), [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    double m = l[ids[0]], total = 0;
    for (float x : l) total += std::exp(double(x) - m);
    std::set<int> want;
    double cum = 0;
    for (int id : ids) {
      want.insert(id);
      cum += std::exp(double(l[id]) - m) / total;
      if (cum >= p - kTopPSlack) break;
    }
    top_p_filter(l, p);
    EXPECT_EQ(kept(l), want) << "p = " << p;
    EXPECT_GT(want.size(), 64u) << "the test should cross the first sorted block";
  }
}

TEST(Sampling, MinPKeepsTokensAboveAFractionOfTheTop) {
  auto run = [](std::initializer_list<double> probs, float mp) {
    auto l = logits_of(probs);
    min_p_filter(l, mp);
    return kept(l);
  };
  // p_max = 0.5: min_p 0.29 keeps p >= 0.145, min_p 0.31 keeps p >= 0.155
  EXPECT_EQ(run({0.1, 0.5, 0.25, 0.15}, 0.29f), (std::set<int>{1, 2, 3}));
  EXPECT_EQ(run({0.1, 0.5, 0.25, 0.15}, 0.31f), (std::set<int>{1, 2}));
  EXPECT_EQ(run({0.1, 0.5, 0.25, 0.15}, 1.0f), (std::set<int>{1}));
  EXPECT_EQ(run({0.1, 0.5, 0.25, 0.15}, 0.0f), (std::set<int>{0, 1, 2, 3}));
  // Scale-free: the same set after a temperature, since it compares ratios to the maximum.
  auto l = logits_of({0.1, 0.5, 0.25, 0.15});
  for (auto& x : l) x += 7.0f;
  min_p_filter(l, 0.31f);
  EXPECT_EQ(kept(l), (std::set<int>{1, 2}));
}

TEST(Sampling, SettingsValidation) {
  SamplingSettings s;
  EXPECT_NO_THROW(s.validate());
  auto bad = [](auto edit) {
    SamplingSettings s;
    edit(s);
    EXPECT_THROW(s.validate(), Error);
  };
  bad([](SamplingSettings& s) { s.temperature = -0.1f; });
  bad([](SamplingSettings& s) { s.temperature = std::nanf(""); });
  bad([](SamplingSettings& s) { s.top_k = -1; });
  bad([](SamplingSettings& s) { s.top_p = 0.0f; });
  bad([](SamplingSettings& s) { s.top_p = 1.5f; });
  bad([](SamplingSettings& s) { s.min_p = -0.1f; });
  bad([](SamplingSettings& s) { s.repetition_penalty = 0.0f; });
}

TEST(Sampling, LogSoftmaxAndTopLogprobs) {
  const auto l = logits_of({0.1, 0.5, 0.25, 0.15});
  std::vector<float> ls(l.size());
  log_softmax(l, ls);
  EXPECT_NEAR(ls[1], std::log(0.5), 1e-6);
  EXPECT_NEAR(token_logprob(l, 3), std::log(0.15), 1e-6);
  std::vector<float> shifted = l;  // invariant under a shift of the logits
  for (auto& x : shifted) x += 100.0f;
  const auto top = top_logprobs(shifted, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 1u);
  EXPECT_EQ(top[1].first, 2u);
  EXPECT_EQ(top[2].first, 3u);
  EXPECT_NEAR(top[0].second, std::log(0.5), 1e-5);
  EXPECT_NEAR(top[2].second, std::log(0.15), 1e-5);
  EXPECT_EQ(top_logprobs(l, 10).size(), 4u);
  // Against a full sort, on a vocabulary with many ties: most probable first, ties by lower id.
  std::mt19937 g(3);
  std::vector<float> many(5000);
  for (auto& x : many) x = static_cast<float>(g() % 40) * 0.25f;
  std::vector<uint32_t> order(many.size());
  for (uint32_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return many[a] > many[b] || (many[a] == many[b] && a < b); });
  for (int n : {1, 7, 100, 5000}) {
    const auto t = top_logprobs(many, n);
    ASSERT_EQ(t.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; i++) {
      EXPECT_EQ(t[i].first, order[i]) << n << " " << i;
      EXPECT_EQ(t[i].second, token_logprob(many, order[i]));
    }
  }
}

// ---- the chain ----------------------------------------------------------------------------------

TEST(Sampling, TemperatureTowardsZeroEqualsGreedy) {
  std::mt19937 g(1);
  for (int trial = 0; trial < 50; trial++) {
    auto l = random_logits(g, 1000);
    // Make the winner clear by at least 1e-3, so 1e-6 scales the gap to 1000.
    const TokenId best = greedy_pick(l);
    l[best] += 1e-3f;
    for (float t : {1e-6f, 0.0f}) {
      SamplingSettings s;
      s.top_k = 0;
      s.temperature = t;
      s.seed = trial;
      Sampler sm(s);
      auto work = l;
      EXPECT_EQ(sm.sample(work, {}), best) << "trial " << trial << " t " << t;
    }
  }
}

TEST(Sampling, TopKOneEqualsGreedy) {
  std::mt19937 g(2);
  for (int trial = 0; trial < 50; trial++) {
    auto l = random_logits(g, 300);
    if (trial % 5 == 0) l[trial] = l[greedy_pick(l)];  // with a tie for the top
    SamplingSettings s;
    s.top_k = 1;
    s.temperature = 1.7f;
    s.seed = 1000 + trial;
    Sampler sm(s);
    auto work = l;
    EXPECT_EQ(sm.sample(work, {}), greedy_pick(l)) << "trial " << trial;
  }
}

TEST(Sampling, GreedyAppliesTheRepetitionPenalty) {
  SamplingSettings s;
  s.greedy = true;
  s.repetition_penalty = 3.0f;
  Sampler sm(s);
  std::vector<float> l = {3.0f, 2.0f, 1.0f};
  EXPECT_EQ(sm.sample(l, std::vector<TokenId>{0}), 1u);  // 3/3 = 1 < 2
}

// OpenAI's frequency and presence penalties against a direct computation with a count table, over
// the generated tokens only.
TEST(Sampling, FrequencyAndPresencePenaltiesMatchADirectComputation) {
  std::mt19937 g(11);
  std::uniform_int_distribution<TokenId> pick(0, 49);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int trial = 0; trial < 20; trial++) {
    std::vector<float> l(50);
    for (float& x : l) x = nd(g);
    std::vector<TokenId> ctx(30);
    for (TokenId& t : ctx) t = pick(g);
    ctx.push_back(60);  // outside the row: ignored
    const size_t from = static_cast<size_t>(trial % 10);
    const float f = 0.1f * static_cast<float>(trial % 7) - 0.3f, pr = 0.25f * static_cast<float>(trial % 5) - 0.5f;
    std::map<TokenId, int> count;
    for (size_t i = from; i < ctx.size(); i++) count[ctx[i]]++;
    std::vector<float> want = l;
    for (const auto& [id, c] : count)
      if (id < want.size()) want[id] -= static_cast<float>(c) * f + pr;
    std::vector<float> got = l;
    apply_frequency_presence(got, std::span<const TokenId>(ctx).subspan(from), f, pr);
    for (size_t i = 0; i < l.size(); i++) ASSERT_EQ(got[i], want[i]) << "trial " << trial << " id " << i;
  }
}

TEST(Sampling, LogitBiasAddsBeforeEverythingAndBindsGreedy) {
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  apply_logit_bias(l, std::vector<std::pair<TokenId, float>>{{0, 5.0f}, {2, -100.0f}, {7, 1.0f}});
  EXPECT_EQ(l, (std::vector<float>{6.0f, 2.0f, -97.0f}));
  SamplingSettings s;
  s.greedy = true;
  s.logit_bias = {{1, 1.5f}};
  Sampler sm(s);
  std::vector<float> row = {3.0f, 2.0f, 1.0f};
  EXPECT_EQ(sm.sample(row, {}), 1u);  // 2 + 1.5 > 3
}

// The penalties count only what was generated: the prompt's tokens are free.
TEST(Sampling, GreedyPenaltiesCountOnlyTheGeneratedTokens) {
  SamplingSettings s;
  s.temperature = 0.0f;
  s.frequency_penalty = 0.6f;
  s.presence_penalty = 0.5f;
  Sampler sm(s);
  const std::vector<TokenId> ctx = {0, 0, 0, 1};  // prompt {0, 0, 0}, then 1 generated
  std::vector<float> a = {3.0f, 2.5f, 1.0f};
  EXPECT_EQ(sm.sample(a, ctx, 3), 0u);  // 1 is penalised to 1.4; the prompt's 0s are not
  std::vector<float> b = {3.0f, 2.5f, 1.0f};
  EXPECT_EQ(sm.sample(b, ctx, 0), 1u);  // counting the prompt too: 0 drops to 3 - 1.8 - 0.5 = 0.7
  SamplingSettings bad;
  bad.frequency_penalty = 2.5f;
  EXPECT_THROW(bad.validate(), Error);
  bad = SamplingSettings{};
  bad.presence_penalty = -3.0f;
  EXPECT_THROW(bad.validate(), Error);
  bad = SamplingSettings{};
  bad.logit_bias = {{1, 101.0f}};
  EXPECT_THROW(bad.validate(), Error);
}

TEST(Sampling, SeededRunsAreReproducible) {
  std::mt19937 g(3);
  const auto l = random_logits(g, 500, 1.0f);
  auto run = [&](uint64_t seed) {
    SamplingSettings s;
    s.top_k = 0;
    s.top_p = 0.95f;
    s.seed = seed;
    Sampler sm(s);
    std::vector<TokenId> out;
    for (int i = 0; i < 200; i++) {
      auto work = l;
      out.push_back(sm.sample(work, {}));
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampling, DrawFollowsTheDistributionChiSquare) {
  const std::vector<double> probs = {0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005};
  const auto l = logits_of({0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005});
  Rng rng(2024);
  std::vector<int> counts(probs.size());
  const int n = 200000;
  for (int i = 0; i < n; i++) counts[draw(l, rng)]++;
  const double crit = chi2_critical_0001(static_cast<int>(probs.size()) - 1);
  EXPECT_LT(chi_square(counts, probs), crit);
  // The test has power: the same counts reject a distribution that is slightly off.
  std::vector<double> wrong = probs;
  wrong[0] -= 0.01;
  wrong[1] += 0.01;
  EXPECT_GT(chi_square(counts, wrong), crit);
  std::vector<double> swapped = probs;
  std::swap(swapped[8], swapped[9]);
  EXPECT_GT(chi_square(counts, swapped), crit);
}

TEST(Sampling, ChainSamplesItsFilteredDistributionChiSquare) {
  // temperature 0.7 -> top-k 6 -> top-p 0.9 -> min-p 0.05, on a 12-token row: the draws must
  // follow the distribution computed independently here.
  const std::vector<float> raw = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.8f, 0.9f, 2.4f, -0.5f, 1.5f, 0.0f, 0.2f};
  SamplingSettings s;
  s.temperature = 0.7f;
  s.top_k = 6;
  s.top_p = 0.9f;
  s.min_p = 0.05f;
  s.seed = 99;
  // Reference: scale, rank, keep 6, then the shortest prefix reaching 0.9, then min-p.
  std::vector<double> z(raw.size());
  for (size_t i = 0; i < raw.size(); i++) z[i] = raw[i] / 0.7;
  std::vector<int> ids(raw.size());
  for (size_t i = 0; i < ids.size(); i++) ids[i] = static_cast<int>(i);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return z[a] > z[b]; });
  ids.resize(6);
  double tot = 0;
  for (int id : ids) tot += std::exp(z[id]);
  double cum = 0;
  size_t keep = 0;
  while (keep < ids.size()) {
    cum += std::exp(z[ids[keep]]) / tot;
    keep++;
    if (cum >= 0.9) break;
  }
  ids.resize(keep);
  std::vector<double> want(raw.size(), 0.0);
  double tot2 = 0;
  for (int id : ids)
    if (std::exp(z[id] - z[ids[0]]) >= 0.05) tot2 += std::exp(z[id]);
  for (int id : ids)
    if (std::exp(z[id] - z[ids[0]]) >= 0.05) want[id] = std::exp(z[id]) / tot2;
  int nonzero = 0;
  for (double w : want) nonzero += w > 0;
  ASSERT_GE(nonzero, 3);

  Sampler sm(s);
  std::vector<float> work = raw, probs(raw.size());
  sm.distribution(work, {}, probs);
  for (size_t i = 0; i < raw.size(); i++) EXPECT_NEAR(probs[i], want[i], 1e-5) << i;

  std::vector<int> counts(raw.size());
  for (int i = 0; i < 100000; i++) {
    work = raw;
    counts[sm.sample(work, {})]++;
  }
  EXPECT_LT(chi_square(counts, want), chi2_critical_0001(nonzero - 1));
}

// ---- the UTF-8 stream -------------------------------------------------------------------------

namespace {
// Independent check: is s well-formed UTF-8 (Unicode Table 3-7)?
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  auto in = [&](size_t k, int lo, int hi) {
    return k < s.size() && static_cast<unsigned char>(s[k]) >= lo && static_cast<unsigned char>(s[k]) <= hi;
  };
  while (i < s.size()) {
    const int b = static_cast<unsigned char>(s[i]);
    if (b < 0x80)
      i += 1;
    else if (b >= 0xC2 && b <= 0xDF && in(i + 1, 0x80, 0xBF))
      i += 2;
    else if (b == 0xE0 && in(i + 1, 0xA0, 0xBF) && in(i + 2, 0x80, 0xBF))
      i += 3;
    else if (((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) && in(i + 1, 0x80, 0xBF) &&
             in(i + 2, 0x80, 0xBF))
      i += 3;
    else if (b == 0xED && in(i + 1, 0x80, 0x9F) && in(i + 2, 0x80, 0xBF))
      i += 3;
    else if (b == 0xF0 && in(i + 1, 0x90, 0xBF) && in(i + 2, 0x80, 0xBF) && in(i + 3, 0x80, 0xBF))
      i += 4;
    else if (b >= 0xF1 && b <= 0xF3 && in(i + 1, 0x80, 0xBF) && in(i + 2, 0x80, 0xBF) &&
             in(i + 3, 0x80, 0xBF))
      i += 4;
    else if (b == 0xF4 && in(i + 1, 0x80, 0x8F) && in(i + 2, 0x80, 0xBF) && in(i + 3, 0x80, 0xBF))
      i += 4;
    else
      return false;
  }
  return true;
}
}  // namespace

TEST(Utf8Stream, HoldsBackAnIncompleteCharacter) {
  Utf8Stream s;
  std::string out;
  const std::string smile = "\xF0\x9F\x98\x80";  // U+1F600, split over three pushes
  s.push("a" + smile.substr(0, 1), out);
  EXPECT_EQ(out, "a");
  EXPECT_EQ(s.pending(), 1u);
  s.push(smile.substr(1, 2), out);
  EXPECT_EQ(out, "a");
  s.push(smile.substr(3) + "b", out);
  EXPECT_EQ(out, "a" + smile + "b");
  EXPECT_EQ(s.pending(), 0u);
}

TEST(Utf8Stream, ReplacesInvalidBytesAtOnce) {
  // Expected strings follow Python's bytes.decode("utf-8", "replace").
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("a\x80z"), "a" + R + "z");            // stray continuation
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), R + R);                  // overlong lead
  EXPECT_EQ(sanitize_utf8("\xE2\x82z"), R + "z");               // truncated, one U+FFFD
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), R + R + R);          // surrogate
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80"), R + R + R + R);  // above U+10FFFF
  EXPECT_EQ(sanitize_utf8("\xFF"), R);
  EXPECT_EQ(sanitize_utf8("\xE2\x82"), R);                                   // cut off at the end
  EXPECT_EQ(sanitize_utf8("\xC3\xA9\xE2\x82\xAC"), "\xC3\xA9\xE2\x82\xAC");  // valid: unchanged
  // An invalid byte is never held: it comes out in the same push.
  Utf8Stream s;
  std::string out;
  s.push("\xE2\x82", out);
  EXPECT_EQ(out, "");
  s.push("\x41", out);
  EXPECT_EQ(out, R + "A");
}

TEST(Utf8Stream, AnyChunkingGivesTheSameValidText) {
  std::mt19937 g(5);
  const std::string pieces[] = {"a",    " ",    "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                "\x80", "\xFF", "\xC3",     "\xE2\x82",     "\xED\xA0\x80"};
  for (int trial = 0; trial < 300; trial++) {
    std::string all;
    const int n = 1 + g() % 30;
    for (int i = 0; i < n; i++) all += pieces[g() % std::size(pieces)];
    const std::string whole = sanitize_utf8(all);
    EXPECT_TRUE(valid_utf8(whole));
    Utf8Stream s;
    std::string out;
    for (size_t i = 0; i < all.size();) {
      const size_t k = std::min(all.size() - i, size_t(1 + g() % 4));
      const size_t before = out.size();
      s.push(std::string_view(all).substr(i, k), out);
      EXPECT_TRUE(valid_utf8(out.substr(before)));  // every piece is valid on its own
      EXPECT_LE(s.pending(), 3u);
      i += k;
    }
    s.finish(out);
    EXPECT_EQ(out, whole);
  }
}

// ---- beam search ------------------------------------------------------------------------------

namespace {

// A model whose next-token distribution is a fixed function of the whole sequence, so beam
// search can be checked by enumerating every sequence. It tracks its rows the way a KV cache
// must, through parent_rows.
struct CraftedModel : BeamModel {
  int V;
  std::function<std::vector<double>(const std::vector<TokenId>&)> dist;  // probabilities
  std::vector<std::vector<TokenId>> rows;
  int steps = 0;
  CraftedModel(int v, std::function<std::vector<double>(const std::vector<TokenId>&)> d)
      : V(v), dist(std::move(d)) {}
  int vocab() const override { return V; }
  void fill(const std::vector<TokenId>& seq, float* lp) {
    const auto p = dist(seq);
    for (int t = 0; t < V; t++) lp[t] = p[t] > 0 ? static_cast<float>(std::log(p[t])) : -kInf;
  }
  void start(std::span<const TokenId> prompt, int, float* lp) override {
    rows = {std::vector<TokenId>(prompt.begin(), prompt.end())};
    fill(rows[0], lp);
  }
  void step(const std::vector<int>& parents, const std::vector<TokenId>& tokens, float* lp) override {
    std::vector<std::vector<TokenId>> next;
    for (size_t i = 0; i < parents.size(); i++) {
      next.push_back(rows.at(parents[i]));
      next.back().push_back(tokens[i]);
      fill(next.back(), lp + i * V);
    }
    rows = std::move(next);
    steps++;
  }
};

// Pseudo-random distribution of a sequence (a hash of it), never tied.
std::vector<double> hashed_dist(const std::vector<TokenId>& seq, int V) {
  uint64_t h = 1469598103934665603ull;
  for (TokenId t : seq) h = (h ^ t) * 1099511628211ull;
  std::vector<double> p(V);
  double tot = 0;
  for (int i = 0; i < V; i++) {
    uint64_t x = h + 0x9E3779B97F4A7C15ull * (i + 1);
    p[i] = 0.05 + static_cast<double>(splitmix64(x) >> 11) * 0x1.0p-53;
    tot += p[i];
  }
  for (auto& x : p) x /= tot;
  return p;
}

}  // namespace

TEST(Beam, FindsTheBestSequenceWhereGreedyDoesNot) {
  // First token: A (0.6) or B (0.4). After A everything is flat; after B one token has 0.9.
  // Greedy: A then 0.34 -> 0.204. Best: B then 0.9 -> 0.36.
  CraftedModel m(3, [](const std::vector<TokenId>& s) -> std::vector<double> {
    if (s.size() == 1) return {0.6, 0.4, 0.0};
    if (s[1] == 0) return {0.34, 0.33, 0.33};
    return {0.05, 0.05, 0.9};
  });
  BeamSettings bs;
  bs.max_new_tokens = 2;
  bs.beams = 1;
  auto greedy = beam_search(m, std::vector<TokenId>{7}, bs);
  ASSERT_EQ(greedy.size(), 1u);
  EXPECT_EQ(greedy[0].tokens, (std::vector<TokenId>{0, 0}));
  bs.beams = 2;
  auto best = beam_search(m, std::vector<TokenId>{7}, bs);
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0].tokens, (std::vector<TokenId>{1, 2}));
  EXPECT_NEAR(best[0].sum_logprob, std::log(0.36), 1e-6);
  EXPECT_NEAR(best[0].score, std::log(0.36) / 2, 1e-6);
  EXPECT_NEAR(best[0].logprobs[0], std::log(0.4), 1e-6);
  EXPECT_NEAR(best[0].logprobs[1], std::log(0.9), 1e-6);
}

TEST(Beam, WideBeamEqualsBruteForce) {
  const int V = 4, L = 4;
  for (uint32_t prompt : {1u, 2u, 3u}) {
    CraftedModel m(V, [&](const std::vector<TokenId>& s) { return hashed_dist(s, V); });
    // Brute force over all V^L sequences.
    double best = -1e300;
    std::vector<TokenId> best_seq;
    for (int code = 0; code < 256; code++) {
      std::vector<TokenId> seq = {prompt};
      double sum = 0;
      for (int k = 0, c = code; k < L; k++, c /= V) {
        sum += std::log(hashed_dist(seq, V)[c % V]);
        seq.push_back(static_cast<TokenId>(c % V));
      }
      if (sum > best) {
        best = sum;
        best_seq.assign(seq.begin() + 1, seq.end());
      }
    }
    BeamSettings bs;
    bs.max_new_tokens = L;
    bs.beams = 64;  // V^(L-1): every prefix survives
    bs.num_return = 3;
    auto r = beam_search(m, std::vector<TokenId>{prompt}, bs);
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].tokens, best_seq);
    EXPECT_NEAR(r[0].sum_logprob, best, 1e-9 + 1e-6 * std::abs(best));
    EXPECT_GE(r[0].score, r[1].score);
    EXPECT_GE(r[1].score, r[2].score);
    EXPECT_FALSE(r[0].finished);
    // Width 1 is greedy.
    bs.beams = 1;
    bs.num_return = 1;
    auto g = beam_search(m, std::vector<TokenId>{prompt}, bs);
    std::vector<TokenId> seq = {prompt};
    for (int k = 0; k < L; k++) {
      const auto p = hashed_dist(seq, V);
      seq.push_back(static_cast<TokenId>(std::max_element(p.begin(), p.end()) - p.begin()));
    }
    EXPECT_EQ(g[0].tokens, std::vector<TokenId>(seq.begin() + 1, seq.end()));
  }
}

TEST(Beam, EndOfTextFinishesAndScoresAreNormalisedByLength) {
  // Token 3 is end-of-text. Brute force over every sequence: those ending at their first EOT
  // and those of full length without one. With length_penalty 0 the score is the sum, which
  // only falls as a sequence grows, so the early stop is exact and a wide beam must find the max.
  const int V = 4, L = 4;
  const TokenId eot = 3;
  CraftedModel m(V, [&](const std::vector<TokenId>& s) { return hashed_dist(s, V); });
  for (float lp : {0.0f, 1.0f}) {
    double best = -1e300;
    std::vector<TokenId> best_seq;
    std::function<void(std::vector<TokenId>&, double)> walk = [&](std::vector<TokenId>& seq, double sum) {
      const size_t gen = seq.size() - 1;
      if (gen > 0 && (seq.back() == eot || gen == static_cast<size_t>(L))) {
        const double score = sum / std::pow(double(gen), double(lp));
        if (score > best) {
          best = score;
          best_seq.assign(seq.begin() + 1, seq.end());
        }
        return;
      }
      const auto p = hashed_dist(seq, V);
      for (int t = 0; t < V; t++) {
        seq.push_back(t);
        walk(seq, sum + std::log(p[t]));
        seq.pop_back();
      }
    };
    std::vector<TokenId> seq = {5};
    walk(seq, 0.0);
    BeamSettings bs;
    bs.max_new_tokens = L;
    bs.beams = 64;
    bs.eot = eot;
    bs.length_penalty = lp;
    auto r = beam_search(m, std::vector<TokenId>{5}, bs);
    ASSERT_FALSE(r.empty());
    if (lp == 0.0f) {
      EXPECT_EQ(r[0].tokens, best_seq);
      EXPECT_NEAR(r[0].score, best, 1e-6 * std::abs(best));
    }
    // Whatever it returns is scored by the definition.
    const double want = r[0].sum_logprob / std::pow(double(r[0].tokens.size()), double(lp));
    EXPECT_NEAR(r[0].score, want, 1e-9);
    EXPECT_EQ(r[0].finished, r[0].tokens.back() == eot);
  }
}

TEST(Beam, LengthPenaltyCanPreferALongerHypothesis) {
  // After the prompt: EOT with 0.5, else token 1 (0.5) followed by a certain EOT... made
  // slightly uncertain so sums differ: [1, EOT] has log(0.5)+log(0.9) over 2 tokens.
  // length_penalty 1: -0.693 vs (-0.693-0.105)/2 = -0.399 -> the longer wins;
  // length_penalty 0: -0.693 vs -0.799 -> the shorter wins.
  CraftedModel m(3, [](const std::vector<TokenId>& s) -> std::vector<double> {
    if (s.size() == 1) return {0.0, 0.5, 0.5};
    return {0.05, 0.05, 0.9};
  });
  BeamSettings bs;
  bs.beams = 2;
  bs.max_new_tokens = 5;
  bs.eot = 2;
  bs.length_penalty = 1.0f;
  auto r = beam_search(m, std::vector<TokenId>{0}, bs);
  EXPECT_EQ(r[0].tokens, (std::vector<TokenId>{1, 2}));
  bs.length_penalty = 0.0f;
  r = beam_search(m, std::vector<TokenId>{0}, bs);
  EXPECT_EQ(r[0].tokens, (std::vector<TokenId>{2}));
  EXPECT_TRUE(r[0].finished);
}

TEST(Beam, StopPredicateEndsAHypothesis) {
  CraftedModel m(4, [](const std::vector<TokenId>& s) { return hashed_dist(s, 4); });
  BeamSettings bs;
  bs.beams = 3;
  bs.max_new_tokens = 6;
  bs.num_return = 3;
  bs.stop = [](std::span<const TokenId> t) { return t.size() >= 2 && t[t.size() - 2] == 1 && t.back() == 1; };
  for (const auto& h : beam_search(m, std::vector<TokenId>{0}, bs)) {
    // A hypothesis never runs past "1 1"; a finished one ends with it.
    for (size_t i = 1; i + 1 < h.tokens.size(); i++) EXPECT_FALSE(h.tokens[i - 1] == 1 && h.tokens[i] == 1);
    if (h.finished) {
      EXPECT_TRUE(bs.stop(h.tokens));
    }
  }
  BeamSettings bad;
  bad.beams = 2;
  bad.num_return = 3;
  EXPECT_THROW(beam_search(m, std::vector<TokenId>{0}, bad), Error);
}
