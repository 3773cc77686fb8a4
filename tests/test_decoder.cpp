// The KV-cache decoder against the training network's forward pass (GPT::forward, with no cache)
// on several shapes: logits within 1e-5 and identical greedy tokens over 200 generated tokens,
// with the context window sliding; batches of rows with different lengths; row copies and beam
// reordering; and the generator's cached and uncached paths giving the same samples.
#include <gtest/gtest.h>

#include <algorithm>
#include <clocale>
#include <cmath>
#include <cstring>
#include <cuchar>
#include <random>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "eval/evaluate.h"
#include "generate/decoder.h"
#include "generate/generator.h"
#include "generate/sampling.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "ops/cpu/kernels.h"
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

TEST(Decoder, PrefillLogitsEqualForwardOnF32) {
  for (const auto& sh : shapes()) {
    GPT m = make_model(sh.cfg, 3);
    GPT pm = test::packed_copy(m, ops::WeightType::F32);
    std::mt19937 g(4);
    const int T = sh.cfg.n_ctx, V = sh.cfg.vocab_size;
    const auto ids = random_tokens(g, T, V);
    m.forward(ids.data(), nullptr, 1, T);
    for (int chunk : {0, 7}) {  // one pass, and chunks of 7 (attention across chunk borders)
      Decoder dec(pm, 2, chunk);
      std::vector<float> all(static_cast<size_t>(T) * V);
      dec.prefill(1, ids, all.data());
      EXPECT_LT(max_diff(all.data(), m.logits(), all.size()), 1e-5f) << sh.name << " chunk " << chunk;
      EXPECT_LT(max_diff(dec.logits(1), m.logits() + static_cast<size_t>(T - 1) * V, V), 1e-5f) << sh.name;
      EXPECT_EQ(dec.length(1), T);
      // The same logits through a bounded buffer of 5 rows (what the server's echo uses): every
      // position read once, in order, and the row ends as after a plain prefill.
      std::vector<float> buf(5 * static_cast<size_t>(V), 0.0f);
      std::vector<int> seen;
      float worst = 0;
      Decoder::PositionLogits sink;
      sink.buf = buf.data();
      sink.rows = 5;
      sink.each = [&](int t0, int n, const float* lg) {
        EXPECT_LE(n, 5);
        for (int i = 0; i < n; i++) {
          seen.push_back(t0 + i);
          worst = std::max(worst, max_diff(lg + static_cast<size_t>(i) * V,
                                           m.logits() + static_cast<size_t>(t0 + i) * V, V));
        }
      };
      dec.prefill(0, ids, sink);
      EXPECT_LT(worst, 1e-5f) << sh.name << " chunk " << chunk;
      ASSERT_EQ(seen.size(), static_cast<size_t>(T));
      for (int t = 0; t < T; t++) EXPECT_EQ(seen[t], t);
      EXPECT_LT(max_diff(dec.logits(0), m.logits() + static_cast<size_t>(T - 1) * V, V), 1e-5f) << sh.name;
      EXPECT_EQ(dec.length(0), T);
    }
  }
}

TEST(Decoder, CachedGreedyEqualsUncachedOver200TokensWithSlidingWindow) {
  for (const auto& sh : shapes()) {
    GPT m = make_model(sh.cfg, 5);
    GPT pm = test::packed_copy(m, ops::WeightType::F32);
    std::mt19937 g(6);
    const int V = sh.cfg.vocab_size;
    std::vector<TokenId> seq = random_tokens(g, 5, V);
    Decoder dec(pm, 1);
    dec.prefill(0, seq);
    const auto run = greedy_against_reference(dec, m, seq, 200);
    EXPECT_LE(run.longest, sh.cfg.n_ctx) << sh.name;
    EXPECT_LT(run.worst, 1e-5f) << sh.name;
    EXPECT_EQ(run.mismatches, 0) << sh.name;
    EXPECT_GT(dec.rebuilds(), 0u) << sh.name << ": the window should have slid";
    // the window is the last n_ctx tokens of the sequence
    const auto w = dec.window(0);
    EXPECT_TRUE(std::equal(w.begin(), w.end(), seq.end() - w.size())) << sh.name;
    EXPECT_GT(distinct_tokens(seq, 5), 10) << sh.name;
  }
}

TEST(Decoder, ReducedPrecisionWeightsCachedEqualUncached) {
  // bf16 and q8 round the activations per row, so the cache changes nothing but the order of
  // fp32 sums (both read the same fp16 cache): a step equals a fresh prefill of the same window
  // closely, and stays near f32.
  const auto sh = shapes()[1];
  GPT m = make_model(sh.cfg, 19);
  const int V = sh.cfg.vocab_size;
  GPT f32 = test::packed_copy(m, ops::WeightType::F32);
  for (ops::WeightType type : {ops::WeightType::BF16, ops::WeightType::Q8}) {
    GPT pm = test::packed_copy(m, type);
    Decoder dec(pm, 1), fresh(pm, 1), ref(f32, 1);
    std::mt19937 g(20);
    std::vector<TokenId> seq = random_tokens(g, 5, V);
    dec.prefill(0, seq);
    float worst = 0, worst_f32 = 0;
    for (int step = 0; step < 80; step++) {
      fresh.prefill(0, seq);
      ref.prefill(0, seq);
      worst = std::max(worst, max_diff(dec.logits(0), fresh.logits(0), V));
      worst_f32 = std::max(worst_f32, max_diff(dec.logits(0), ref.logits(0), V));
      const TokenId t = penalised_greedy(fresh.logits(0), V, seq);
      seq.push_back(t);
      const int row = 0;
      dec.step(std::span<const int>(&row, 1), std::span<const TokenId>(&t, 1));
    }
    // q8 rounds each activation to one of 255 steps: a last-bit difference in the attention's
    // sums (a step's order against a prefill's) can move a value across a rounding boundary,
    // which shows as ~1e-4 in the logits; bf16 hides such differences entirely.
    EXPECT_LT(worst, type == ops::WeightType::Q8 ? 1e-3f : 1e-5f) << ops::weight_type_name(type);
    EXPECT_GT(worst_f32, 0.0f) << ops::weight_type_name(type) << ": rounding should show";
    EXPECT_LT(worst_f32, 0.2f) << ops::weight_type_name(type);
  }
}

TEST(Decoder, BatchRowsOfDifferentLengths) {
  const auto sh = shapes()[1];  // banded, the hardest for positions
  GPT m = make_model(sh.cfg, 7);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  const int V = sh.cfg.vocab_size;
  std::mt19937 g(8);
  std::vector<std::vector<TokenId>> seqs = {random_tokens(g, 3, V), random_tokens(g, 17, V),
                                            random_tokens(g, 40, V)};
  Decoder dec(pm, 4);
  const std::vector<int> rows = {2, 0, 3};  // rows need not be 0..n-1
  for (size_t i = 0; i < rows.size(); i++) dec.prefill(rows[i], seqs[i]);
  float worst = 0;
  for (int step = 0; step < 60; step++) {
    std::vector<TokenId> next;
    for (size_t i = 0; i < rows.size(); i++) {
      const auto ref = reference_logits(m, seqs[i]);
      worst = std::max(worst, max_diff(dec.logits(rows[i]), ref.data(), V));
      next.push_back(static_cast<TokenId>((g() % 3 == 0) ? g() % V : greedy_pick(ref)));
      seqs[i].push_back(next.back());
    }
    dec.step(rows, next);
  }
  EXPECT_LT(worst, 1e-5f);
  EXPECT_GT(dec.rebuilds(), 0u);
}

TEST(Decoder, CopyAndReorderRows) {
  const auto sh = shapes()[0];
  GPT m = make_model(sh.cfg, 9);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  std::mt19937 g(10);
  Decoder dec(pm, 4);
  check_copy_and_reorder(dec, m, g);
}

TEST(Decoder, RejectsBadCalls) {
  const auto sh = shapes()[0];
  GPT m = make_model(sh.cfg, 1);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  Decoder dec(pm, 2);
  const std::vector<TokenId> none;
  EXPECT_THROW(dec.prefill(0, none), Error);
  EXPECT_THROW(dec.prefill(2, std::vector<TokenId>{1}), Error);
  EXPECT_THROW(dec.prefill(0, std::vector<TokenId>{static_cast<TokenId>(sh.cfg.vocab_size)}), Error);
  const int row = 1;
  const TokenId t = 1;
  EXPECT_THROW(dec.step(std::span<const int>(&row, 1), std::span<const TokenId>(&t, 1)),
               Error);  // not prefilled
  EXPECT_THROW(Decoder(pm, 0), Error);
}

TEST(Decoder, EvalOnPackedWeightsEqualsTheTrainingNetwork) {
  for (const auto& sh : shapes()) {
    GPT m = make_model(sh.cfg, 17);
    GPT pm = test::packed_copy(m, ops::WeightType::F32);
    std::mt19937 g(18);
    const auto ids = random_tokens(g, 3 * sh.cfg.n_ctx + 5, sh.cfg.vocab_size);
    for (int stride : {0, 16}) {
      EvalOptions opt;
      opt.stride = stride;
      const EvalResult a = evaluate(m, ids, opt);
      const EvalResult b = evaluate(pm, ids, opt);
      EXPECT_EQ(a.tokens, b.tokens);
      EXPECT_EQ(a.windows, b.windows);
      EXPECT_NEAR(a.loss, b.loss, 1e-5) << sh.name << " stride " << stride;
    }
  }
}

// ---- the attention kernels, at every level this CPU runs ----------------------------------------

std::vector<const ops::cpu::KernelTable*> kernel_levels() {
  std::vector<const ops::cpu::KernelTable*> k = {&ops::cpu::kernels_scalar};
  if (cpu().avx2) k.push_back(&ops::cpu::kernels_avx2);
  if (cpu().avx512f) k.push_back(&ops::cpu::kernels_avx512);
  return k;
}

TEST(DecoderKernels, HalfConversionsMatchTheReferenceBitForBit) {
  // every half to float, and floats of every scale (ties, subnormals, overflow) to half
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; i++) all[i] = static_cast<uint16_t>(i);
  std::mt19937 g(1);
  std::vector<float> xs = {0.0f,     -0.0f,         1.0f,           -2.5f,         65504.0f, 65519.0f,
                           65520.0f, 1e9f,          -1e9f,          6.1e-5f,       3e-8f,    2.98e-8f,
                           1e-12f,   1.0009765625f, 1.00048828125f, 1.00146484375f};
  std::uniform_real_distribution<float> e(-30.0f, 20.0f);
  for (int i = 0; i < 5000; i++) xs.push_back((g() & 1 ? -1.0f : 1.0f) * std::exp2(e(g)));
  for (const auto* k : kernel_levels()) {
    std::vector<float> f(all.size());
    k->from_f16(f.data(), all.data(), all.size());
    for (int i = 0; i < 65536; i++) {
      const float want = f16_to_f32(all[i]);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(f[i])) << k->level << " " << i;
      } else {
        EXPECT_EQ(std::memcmp(&f[i], &want, 4), 0) << k->level << " half " << i;
      }
    }
    std::vector<uint16_t> h(xs.size());
    k->to_f16(h.data(), xs.data(), xs.size());
    for (size_t i = 0; i < xs.size(); i++) EXPECT_EQ(h[i], f32_to_f16(xs[i])) << k->level << " " << xs[i];
  }
}

TEST(DecoderKernels, AttendAndSoftmaxMatchADoubleReference) {
  std::mt19937 g(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int n : {1, 7, 100, 333}) {
    for (int hs : {8, 64, 80}) {
      std::vector<float> q(hs), K(static_cast<size_t>(n) * hs), V(K.size());
      for (auto& x : q) x = nd(g);
      for (auto& x : K) x = 2.0f * nd(g);
      for (auto& x : V) x = nd(g);
      std::vector<uint16_t> Kh(K.size()), Vh(V.size());
      for (size_t i = 0; i < K.size(); i++) {
        Kh[i] = f32_to_f16(K[i]);
        Vh[i] = f32_to_f16(V[i]);
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
      // reference in double, for fp32 rows and for the rows rounded to half
      auto reference = [&](bool half) {
        std::vector<double> s(n), out(hs, 0.0);
        double m = -1e300, sum = 0;
        for (int j = 0; j < n; j++) {
          double d = 0;
          for (int c = 0; c < hs; c++) {
            const size_t i = static_cast<size_t>(j) * hs + c;
            d += double(q[c]) * (half ? f16_to_f32(Kh[i]) : K[i]);
          }
          s[j] = d * scale;
          m = std::max(m, s[j]);
        }
        for (int j = 0; j < n; j++) sum += s[j] = std::exp(s[j] - m);
        for (int j = 0; j < n; j++)
          for (int c = 0; c < hs; c++) {
            const size_t i = static_cast<size_t>(j) * hs + c;
            out[c] += s[j] / sum * (half ? f16_to_f32(Vh[i]) : V[i]);
          }
        return out;
      };
      const auto want32 = reference(false), want16 = reference(true);
      for (const auto* k : kernel_levels()) {
        std::vector<float> out(hs), scratch(n + hs);
        k->attend_f32(out.data(), q.data(), K.data(), V.data(), n, hs, scale, scratch.data());
        for (int c = 0; c < hs; c++)
          EXPECT_NEAR(out[c], want32[c], 2e-6) << k->level << " n " << n << " hs " << hs;
        k->attend_f16(out.data(), q.data(), Kh.data(), Vh.data(), n, hs, scale, scratch.data());
        for (int c = 0; c < hs; c++)
          EXPECT_NEAR(out[c], want16[c], 2e-6) << k->level << " n " << n << " hs " << hs;
      }
    }
  }
  for (const auto* k : kernel_levels()) {
    std::vector<float> row = {5.0f, 1.0f, 2.0f, 3.0f, -80.0f, 9.0f};
    k->masked_softmax(row.data(), 6, 1, 4);  // columns 1..4 visible
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(-80.0);
    EXPECT_EQ(row[0], 0.0f);
    EXPECT_EQ(row[5], 0.0f);
    EXPECT_NEAR(row[1], std::exp(1.0) / z, 1e-7) << k->level;
    EXPECT_NEAR(row[3], std::exp(3.0) / z, 1e-7) << k->level;
    EXPECT_NEAR(row[4], std::exp(-80.0) / z, 1e-12) << k->level;
  }
}

TEST(Decoder, HalfPrecisionCacheIsCloseAndHalvesTheMemory) {
  const auto sh = shapes()[0];
  GPT m = make_model(sh.cfg, 23);
  const int V = sh.cfg.vocab_size;
  GPT f32 = test::packed_copy(m, ops::WeightType::F32);
  GPT q8 = test::packed_copy(m, ops::WeightType::Q8);
  Decoder a(f32, 1), b(f32, 1, 0, KvType::F16), c(q8, 1);
  EXPECT_EQ(a.cache_type(), KvType::F32);
  EXPECT_EQ(b.cache_type(), KvType::F16);
  EXPECT_EQ(c.cache_type(), KvType::F16);  // Auto: fp16 for reduced-precision weights
  EXPECT_EQ(2 * b.cache_bytes(), a.cache_bytes());
  std::mt19937 g(24);
  std::vector<TokenId> seq = random_tokens(g, 10, V);
  a.prefill(0, seq);
  b.prefill(0, seq);
  float worst = 0;
  for (int step = 0; step < 60; step++) {
    worst = std::max(worst, max_diff(a.logits(0), b.logits(0), V));
    const TokenId t = penalised_greedy(a.logits(0), V, seq);
    seq.push_back(t);
    const int row = 0;
    a.step(std::span<const int>(&row, 1), std::span<const TokenId>(&t, 1));
    b.step(std::span<const int>(&row, 1), std::span<const TokenId>(&t, 1));
  }
  EXPECT_GT(worst, 0.0f);
  EXPECT_LT(worst, 0.05f);
}

// ---- the generator ---------------------------------------------------------------------------

TEST(DecoderGenerator, CachedAndUncachedGiveTheSameSamples) {
  for (const auto& sh : shapes()) {
    GPT m = make_model(sh.cfg, 11);
    GPT pm = test::packed_copy(m, ops::WeightType::F32);
    Generator gen(pm);
    std::mt19937 g(12);
    const auto prompt = random_tokens(g, 9, sh.cfg.vocab_size);
    GenerateSettings s;
    s.max_new_tokens = 70;  // past the context: the window slides
    s.num_samples = 3;
    s.sampling.seed = 5;
    s.sampling.top_k = 20;
    s.sampling.repetition_penalty = 1.3f;
    for (bool greedy : {true, false}) {
      s.sampling.greedy = greedy;
      s.kv_cache = true;
      const auto a = gen.generate(prompt, s);
      s.kv_cache = false;
      const auto b = gen.generate(prompt, s);
      ASSERT_EQ(a.size(), 3u);
      for (int k = 0; k < 3; k++) {
        EXPECT_EQ(a[k].ids, b[k].ids) << sh.name << " sample " << k << " greedy " << greedy;
        EXPECT_EQ(a[k].ids.size(), 70u);
      }
      if (greedy) {
        EXPECT_EQ(a[0].ids, a[1].ids);
      } else {
        EXPECT_NE(a[0].ids, a[1].ids) << sh.name;
      }
    }
  }
}

TEST(DecoderGenerator, SampleKIsTheSameInAnyBatch) {
  const auto sh = shapes()[0];
  GPT m = make_model(sh.cfg, 13);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  Generator gen(pm);
  const std::vector<TokenId> prompt = {1, 2, 3};
  GenerateSettings s;
  s.max_new_tokens = 30;
  s.sampling.seed = 77;
  s.num_samples = 1;
  const auto one = gen.generate(prompt, s);
  s.num_samples = 4;
  const auto four = gen.generate(prompt, s);
  EXPECT_EQ(one[0].ids, four[0].ids);
  // and the callback sees every token, in step order, with the model's own log-probabilities
  s.num_samples = 2;
  s.show_probs = 3;
  int events = 0, last_step = -1;
  gen.generate(prompt, s, [&](const TokenEvent& ev) {
    events++;
    EXPECT_GE(ev.step, last_step);
    last_step = ev.step;
    ASSERT_EQ(ev.top.size(), 3u);
    EXPECT_GE(ev.top[0].second, ev.top[1].second);
    EXPECT_NEAR(ev.logprob, token_logprob(ev.logits, ev.id), 1e-6);
    EXPECT_NEAR(ev.top[0].second, token_logprob(ev.logits, ev.top[0].first), 1e-6);
  });
  EXPECT_EQ(events, 60);
}

TEST(DecoderGenerator, BeamCachedEqualsUncachedAndBeatsGreedy) {
  const auto sh = shapes()[1];
  GPT m = make_model(sh.cfg, 15);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  Generator gen(pm);
  const std::vector<TokenId> prompt = {4, 5, 6, 7};
  GenerateSettings s;
  s.max_new_tokens = 60;
  s.beams = 4;
  s.num_samples = 2;
  const auto a = gen.generate(prompt, s);
  s.kv_cache = false;
  const auto b = gen.generate(prompt, s);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].ids, b[0].ids);
  EXPECT_EQ(a[1].ids, b[1].ids);
  EXPECT_NEAR(a[0].score, b[0].score, 1e-4);
  EXPECT_GE(a[0].score, a[1].score);
  // The greedy sequence's own score is no better than the beam's best.
  GenerateSettings gs;
  gs.max_new_tokens = 60;
  gs.sampling.greedy = true;
  double sum = 0;
  const auto g = gen.generate(prompt, gs, [&](const TokenEvent& ev) { sum += ev.logprob; });
  EXPECT_GE(a[0].score, sum / static_cast<double>(g[0].ids.size()) - 1e-6);
}

// A vocabulary of 30 tokens: letters, two halves of "é", a 4-byte emoji in two halves, and
// <|endoftext|> as id 29.
class TinyTokenizer final : public Tokenizer {
 public:
  TinyTokenizer() {
    for (char c = 'a'; c <= 'x'; c++) bytes_.push_back(std::string(1, c));  // 0..23
    bytes_.push_back(" ");                                                  // 24
    bytes_.push_back("\xC3");                                               // 25
    bytes_.push_back("\xA9");                                               // 26
    bytes_.push_back("\xF0\x9F");                                           // 27
    bytes_.push_back("\x98\x80");                                           // 28
    bytes_.push_back("<|endoftext|>");                                      // 29
  }
  std::string kind() const override { return "tiny"; }
  size_t vocab_size() const override { return bytes_.size(); }
  std::vector<TokenId> encode(std::string_view, const AllowedSpecial&, int) const override {
    fail("not used");
  }
  std::string decode(std::span<const TokenId> ids) const override {
    std::string s;
    for (TokenId id : ids) s += token_bytes(id);
    return s;
  }
  std::string_view token_bytes(TokenId id) const override { return bytes_.at(id); }
  std::vector<std::pair<std::string, TokenId>> special_tokens() const override {
    return {{"<|endoftext|>", 29}};
  }
  void save(const std::string&) const override {}

 private:
  std::vector<std::string> bytes_;
};

// Independent check: is s well-formed UTF-8? (Unicode Table 3-7, via the C library's decoder.)
bool valid_utf8(const std::string& s) {
  std::mbstate_t st{};
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    char32_t c;
    const size_t n = std::mbrtoc32(&c, p, end - p, &st);
    if (n == 0) {
      p++;
      continue;
    }
    if (n > 4) return false;  // (size_t)-1, -2, -3
    p += n;
  }
  return true;
}

TEST(DecoderGenerator, TextIsValidUtf8AndStopsWhereAStopStringAppears) {
  ASSERT_NE(std::setlocale(LC_CTYPE, "C.UTF-8"), nullptr);
  ModelConfig cfg = small(2, 2, 16, 32, 30);
  cfg.tied_head = false;
  GPT m = make_model(cfg, 21);
  // A flat end-of-text row: its logit stays near 0 while the others spread, so samples end at
  // different steps.
  float* head = m.param("lm_head.weight");
  for (int c = 0; c < cfg.n_embd; c++) head[29 * cfg.n_embd + c] = 0.0f;
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  const std::shared_ptr<const Tokenizer> tok = std::make_shared<TinyTokenizer>();
  Generator gen(pm, tok);
  for (const std::vector<std::string>& stop :
       {std::vector<std::string>{}, std::vector<std::string>{"ab", "\xC3\xA9"},
        std::vector<std::string>{"b", " "}}) {
    GenerateSettings s;
    s.max_new_tokens = 40;
    s.num_samples = 6;
    s.sampling.top_k = 0;
    s.sampling.temperature = 3.0f;  // flat: every token comes up, the split characters too
    s.sampling.seed = 3;
    s.stop = stop;
    std::vector<std::string> streamed(s.num_samples);
    const auto res = gen.generate(std::vector<TokenId>{0, 1}, s, [&](const TokenEvent& ev) {
      EXPECT_TRUE(valid_utf8(std::string(ev.text)));
      streamed[ev.sample] += ev.text;
    });
    int eot = 0, stopped = 0;
    bool multibyte = false;
    for (int k = 0; k < s.num_samples; k++) {
      const auto& r = res[k];
      multibyte |= r.text.find_first_of("\xC3\xF0\xEF") != std::string::npos;
      EXPECT_EQ(streamed[k], r.text);
      // The text is the sanitized bytes of the ids (without the end-of-text token), cut before
      // the first stop string.
      std::vector<TokenId> ids = r.ids;
      if (r.finish == FinishReason::EndOfText) {
        ASSERT_EQ(ids.back(), 29u);
        ids.pop_back();
        eot++;
      }
      for (TokenId id : ids) EXPECT_NE(id, 29u);
      std::string full = sanitize_utf8(tok->decode(ids));
      size_t cut = std::string::npos;
      for (const auto& st : stop) cut = std::min(cut, full.find(st));
      if (r.finish == FinishReason::Stop) {
        stopped++;
        ASSERT_NE(cut, std::string::npos);
        EXPECT_EQ(r.text, full.substr(0, cut));
        // it stopped at the token that completed the stop string
        std::vector<TokenId> before(ids.begin(), ids.end() - 1);
        const std::string prev = sanitize_utf8(tok->decode(before));
        for (const auto& st : stop) EXPECT_EQ(prev.find(st), std::string::npos);
      } else {
        EXPECT_EQ(cut, std::string::npos);
        EXPECT_EQ(r.text, full);
      }
      // A sample is the same when generated alone: rows that finish early leave the others be.
      GenerateSettings one = s;
      one.num_samples = 1;
      one.sampling.seed = s.sampling.seed;
      if (k == 0) {
        EXPECT_EQ(gen.generate(std::vector<TokenId>{0, 1}, one)[0].ids, r.ids);
      }
    }
    if (stop.empty()) {
      EXPECT_GT(eot, 0) << "some sample should end with end-of-text";
      EXPECT_TRUE(multibyte) << "some sample should hold a character split over tokens";
    } else {
      EXPECT_GT(stopped, 0) << "some sample should meet a stop string";
    }
  }
}

TEST(DecoderGenerator, TextAssemblerHoldsBackPossibleStopStrings) {
  auto tok = std::make_shared<TinyTokenizer>();
  const std::vector<std::string> stop = {"abc"};
  TextAssembler t(tok, &stop);
  EXPECT_EQ(t.add(23), "x");
  EXPECT_EQ(t.add(0), "");     // "a" may start "abc"
  EXPECT_EQ(t.add(1), "");     // "ab" too
  EXPECT_EQ(t.add(3), "abd");  // not a stop: released
  EXPECT_EQ(t.add(0), "");
  EXPECT_EQ(t.add(1), "");
  EXPECT_EQ(t.add(2), "");  // "abc": stopped, nothing of it printed
  EXPECT_TRUE(t.stopped());
  EXPECT_EQ(t.text(), "xabd");
  TextAssembler u(tok, &stop);
  EXPECT_EQ(u.add(25), "");  // half of é
  EXPECT_EQ(u.add(26), "\xC3\xA9");
  EXPECT_EQ(u.add(0), "");
  EXPECT_EQ(u.finish(), "a");  // the end releases what was held
  EXPECT_EQ(u.text(),
            "\xC3\xA9"
            "a");
  TextAssembler v(tok, nullptr);
  EXPECT_EQ(v.add(27), "");
  EXPECT_EQ(v.finish(), "\xEF\xBF\xBD");  // an unfinished emoji becomes U+FFFD
}

TEST(DecoderGenerator, SettingsConflicts) {
  GenerateSettings s;
  s.beams = 2;
  s.num_samples = 3;
  EXPECT_THROW(s.validate(), Error);
  s.num_samples = 1;
  s.show_probs = 2;
  EXPECT_THROW(s.validate(), Error);
  GenerateSettings t;
  t.sampling.top_p = 0.0f;
  EXPECT_THROW(t.validate(), Error);
  t = GenerateSettings{};
  t.stop = {""};
  EXPECT_THROW(t.validate(), Error);
}

}  // namespace
}  // namespace gpt
