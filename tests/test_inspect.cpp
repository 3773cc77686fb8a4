// gpt inspect's engine (generate/inspect.h) and the ForwardObserver under it: on every model shape
// (GPT-2, GPT-3 banded, GPT-1 post-LN, no biases with an untied head), the last layer's logit lens
// against the model's own next-token probabilities from the uncached forward, the residual-stream
// statistics against a float64 forward written here from the raw weights, the attention entropies
// against the one-head capture of the attention view and against that reference; a deliberately
// decisive model whose lens and entropies are known in closed form; the JSON, text and SVG; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "generate/decoder.h"
#include "generate/inspect.h"
#include "model/gpt.h"
#include "model_test_util.h"
#include "train/plot.h"

namespace gpt {
namespace {

using Vec = std::vector<double>;

// A float64 forward from the raw parameters, keeping what inspect reports: per layer the inputs and
// outputs of ln_1 and ln_2 and the block's output [T, C], every head's attention [H, T, T], and the
// head's logits of every block's output [T, V].
struct Reference {
  std::vector<Vec> ln_in[2], ln_out[2], out, att, lens;
};

Reference reference_forward(const GPT& m, const std::vector<TokenId>& ids) {
  const ModelConfig& c = m.config();
  const int T = static_cast<int>(ids.size()), C = c.n_embd, H = c.n_head, hs = c.head_dim(), V = c.vocab_size;
  auto P = [&](const std::string& n) { return m.find(n) ? m.param(n) : nullptr; };
  auto layernorm = [&](const Vec& x, const std::string& name) {
    const float *g = P(name + ".weight"), *b = P(name + ".bias");
    Vec y(x.size());
    for (int t = 0; t < T; t++) {
      double mean = 0, var = 0;
      for (int i = 0; i < C; i++) mean += x[t * C + i];
      mean /= C;
      for (int i = 0; i < C; i++) var += (x[t * C + i] - mean) * (x[t * C + i] - mean);
      const double rstd = 1.0 / std::sqrt(var / C + c.ln_eps);
      for (int i = 0; i < C; i++) y[t * C + i] = (x[t * C + i] - mean) * rstd * g[i] + (b ? b[i] : 0.0);
    }
    return y;
  };
  auto linear = [&](const Vec& x, const std::string& name, int in, int outd) {
    const float *W = P(name + ".weight"), *b = P(name + ".bias");
    Vec y(static_cast<size_t>(T) * outd);
    for (int t = 0; t < T; t++)
      for (int o = 0; o < outd; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; i++) s += x[size_t(t) * in + i] * W[size_t(i) * outd + o];
        y[size_t(t) * outd + o] = s;
      }
    return y;
  };
  auto add = [](Vec a, const Vec& b) {
    for (size_t i = 0; i < a.size(); i++) a[i] += b[i];
    return a;
  };
  const float* wte = P("wte.weight");
  const float* head = c.tied_head ? wte : P("lm_head.weight");
  auto logits = [&](const Vec& x) {
    const Vec h = c.final_ln() ? layernorm(x, "ln_f") : x;
    Vec z(static_cast<size_t>(T) * V);
    for (int t = 0; t < T; t++)
      for (int v = 0; v < V; v++) {
        double s = 0;
        for (int i = 0; i < C; i++) s += h[t * C + i] * head[size_t(v) * C + i];
        z[size_t(t) * V + v] = s;
      }
    return z;
  };
  Reference r;
  Vec x(static_cast<size_t>(T) * C);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < C; i++)
      x[t * C + i] = double(wte[size_t(ids[t]) * C + i]) + P("wpe.weight")[t * C + i];
  const bool pre = c.ln == LnPlacement::Pre;
  for (int l = 0; l < c.n_layer; l++) {
    const std::string h = "h." + std::to_string(l) + ".";
    const Vec a_in = pre ? layernorm(x, h + "ln_1") : x;
    const Vec qkv = linear(a_in, h + "attn.c_attn", C, 3 * C);
    Vec y(static_cast<size_t>(T) * C, 0.0), att(static_cast<size_t>(H) * T * T, 0.0);
    for (int hd = 0; hd < H; hd++)
      for (int q = 0; q < T; q++) {
        const int k0 = c.banded(l) ? std::max(0, q - c.band + 1) : 0;
        double mx = -1e300;
        Vec s(T, 0.0);
        for (int k = k0; k <= q; k++) {
          double d = 0;
          for (int e = 0; e < hs; e++)
            d += qkv[size_t(q) * 3 * C + hd * hs + e] * qkv[size_t(k) * 3 * C + C + hd * hs + e];
          s[k] = d / std::sqrt(double(hs));
          mx = std::max(mx, s[k]);
        }
        double z = 0;
        for (int k = k0; k <= q; k++) z += s[k] = std::exp(s[k] - mx);
        for (int k = k0; k <= q; k++) {
          const double p = s[k] / z;
          att[(size_t(hd) * T + q) * T + k] = p;
          for (int e = 0; e < hs; e++)
            y[size_t(q) * C + hd * hs + e] += p * qkv[size_t(k) * 3 * C + 2 * C + hd * hs + e];
        }
      }
    r.att.push_back(att);
    const Vec mid = add(x, linear(y, h + "attn.c_proj", C, C));
    auto mlp = [&](const Vec& in) {
      Vec f = linear(in, h + "mlp.c_fc", C, 4 * C);
      for (double& v : f) v = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      return linear(f, h + "mlp.c_proj", 4 * C, C);
    };
    if (pre) {
      r.ln_in[0].push_back(x);
      r.ln_out[0].push_back(a_in);
      r.ln_in[1].push_back(mid);
      r.ln_out[1].push_back(layernorm(mid, h + "ln_2"));
      x = add(mid, mlp(r.ln_out[1].back()));
    } else {
      r.ln_in[0].push_back(mid);
      r.ln_out[0].push_back(layernorm(mid, h + "ln_1"));
      r.ln_in[1].push_back(add(r.ln_out[0].back(), mlp(r.ln_out[0].back())));
      r.ln_out[1].push_back(layernorm(r.ln_in[1].back(), h + "ln_2"));
      x = r.ln_out[1].back();
    }
    r.out.push_back(x);
    r.lens.push_back(logits(x));
  }
  return r;
}

// The per-position statistics of a [T, C] stream, averaged over positions and at the last.
StreamSummary reference_summary(const Vec& x, int T, int C) {
  StreamSummary s;
  for (int t = 0; t < T; t++) {
    double mean = 0, var = 0, sq = 0;
    for (int i = 0; i < C; i++) mean += x[t * C + i], sq += x[t * C + i] * x[t * C + i];
    mean /= C;
    for (int i = 0; i < C; i++) var += (x[t * C + i] - mean) * (x[t * C + i] - mean);
    const StreamStats st{mean, std::sqrt(var / C), std::sqrt(sq)};
    s.avg.mean += st.mean / T, s.avg.std += st.std / T, s.avg.norm += st.norm / T;
    if (t == T - 1) s.last = st;
  }
  return s;
}

void expect_summary(const StreamSummary& got, const StreamSummary& want, const std::string& what) {
  for (auto [g, w, part] : {std::tuple{got.avg, want.avg, "avg"}, std::tuple{got.last, want.last, "last"}}) {
    const double tol = 1e-4 * (1 + w.norm);
    EXPECT_NEAR(g.mean, w.mean, tol) << what << " " << part << " mean";
    EXPECT_NEAR(g.std, w.std, tol) << what << " " << part << " std";
    EXPECT_NEAR(g.norm, w.norm, tol) << what << " " << part << " norm";
  }
}

std::vector<double> softmax(const float* z, int V) {
  double mx = -1e300, s = 0;
  for (int v = 0; v < V; v++) mx = std::max(mx, double(z[v]));
  std::vector<double> p(V);
  for (int v = 0; v < V; v++) s += p[v] = std::exp(double(z[v]) - mx);
  for (double& x : p) x /= s;
  return p;
}

class InspectShapes : public ::testing::TestWithParam<test::Shape> {};

// The last layer's lens is the model's own prediction: every one of the V probabilities, at every
// position, within 1e-5 of the softmax of GPT::forward's logits (the uncached, whole-sequence pass).
TEST_P(InspectShapes, LastLayerLensIsTheModelsPrediction) {
  GPT m = test::make_model(GetParam().cfg, 7);
  const int V = m.config().vocab_size, L = m.config().n_layer;
  std::mt19937 g(3);
  const std::vector<TokenId> ids = test::random_tokens(g, 19, V);
  InspectOptions o;
  o.top_k = V;
  o.all_positions = true;
  const Inspection r = inspect(m, ids, o);
  m.forward(ids.data(), nullptr, 1, static_cast<int>(ids.size()));
  ASSERT_EQ(r.layers[L - 1].lens.size(), ids.size());
  double decisive = 0;
  for (size_t t = 0; t < ids.size(); t++) {
    const std::vector<double> p = softmax(m.logits() + t * V, V);
    const auto& top = r.layers[L - 1].lens[t];
    ASSERT_EQ(top.size(), static_cast<size_t>(V));
    for (size_t i = 0; i < top.size(); i++) {
      EXPECT_NEAR(top[i].prob, p[top[i].id], 1e-5) << "position " << t << " rank " << i;
      if (i > 0) {
        EXPECT_GE(top[i - 1].prob, top[i].prob);
      }
    }
    decisive = std::max(decisive, top[0].prob);
  }
  EXPECT_GT(decisive, 10.0 / V);  // the scaled embeddings make it far from uniform
  // Only the last position by default, the same numbers.
  const Inspection last = inspect(m, ids, {.top_k = 3});
  EXPECT_EQ(last.lens_from, static_cast<int>(ids.size()) - 1);
  for (int l = 0; l < L; l++) {
    ASSERT_EQ(last.layers[l].lens.size(), 1u);
    for (int i = 0; i < 3; i++) {
      EXPECT_EQ(last.layers[l].lens[0][i].id, r.layers[l].lens.back()[i].id);
      EXPECT_NEAR(last.layers[l].lens[0][i].prob, r.layers[l].lens.back()[i].prob, 1e-6);
    }
  }
}

// Statistics, entropies and every layer's lens against the float64 forward above; entropies also
// against the one-head capture of the attention view (Decoder::capture_attention).
TEST_P(InspectShapes, MatchesAFloat64Forward) {
  GPT m = test::make_model(GetParam().cfg, 11);
  const ModelConfig& c = m.config();
  const int V = c.vocab_size, C = c.n_embd, H = c.n_head;
  std::mt19937 g(5);
  const std::vector<TokenId> ids = test::random_tokens(g, 14, V);
  const int T = static_cast<int>(ids.size());
  const Inspection r = inspect(m, ids, {.top_k = V, .all_positions = true});
  const Reference ref = reference_forward(m, ids);
  Decoder dec(m, 1, T);
  std::vector<float> w(static_cast<size_t>(T) * T);
  for (int l = 0; l < c.n_layer; l++) {
    const LayerInspection& L = r.layers[l];
    EXPECT_EQ(L.banded, c.banded(l));
    for (int k = 0; k < 2; k++) {
      expect_summary(L.ln_in[k], reference_summary(ref.ln_in[k][l], T, C),
                     fmt::format("layer {} ln_{} in", l, k + 1));
      expect_summary(L.ln_out[k], reference_summary(ref.ln_out[k][l], T, C),
                     fmt::format("layer {} ln_{} out", l, k + 1));
    }
    expect_summary(L.out, reference_summary(ref.out[l], T, C), fmt::format("layer {} out", l));
    ASSERT_EQ(L.entropy.size(), static_cast<size_t>(H));
    for (int h = 0; h < H; h++) {
      dec.capture_attention(l, h, w.data());
      dec.prefill(0, ids);
      double from_capture = 0, from_ref = 0;
      for (int q = 0; q < T; q++)
        for (int k = 0; k < T; k++) {
          const double p = w[size_t(q) * T + k], pr = ref.att[l][(size_t(h) * T + q) * T + k];
          if (p > 0) from_capture -= p * std::log(p) / T;
          if (pr > 0) from_ref -= pr * std::log(pr) / T;
        }
      EXPECT_NEAR(L.entropy[h], from_capture, 1e-9) << "layer " << l << " head " << h;
      EXPECT_NEAR(L.entropy[h], from_ref, 1e-4) << "layer " << l << " head " << h;
    }
    // Every layer's lens: the float64 head's probabilities of that layer's output.
    for (int t = 0; t < T; t++) {
      std::vector<float> z(ref.lens[l].begin() + size_t(t) * V, ref.lens[l].begin() + size_t(t + 1) * V);
      const std::vector<double> p = softmax(z.data(), V);
      for (const LensToken& x : L.lens[t])
        ASSERT_NEAR(x.prob, p[x.id], 1e-4) << "layer " << l << " position " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, InspectShapes, ::testing::ValuesIn(test::shapes()), [](const auto& i) {
  std::string n = i.param.name;
  for (char& ch : n)
    if (ch == '-') ch = '_';
  return n;
});

// A deliberately decisive model whose answers are known: every block adds nothing (c_proj weights
// and biases zero), so the residual stream stays the embedding wte[id] + wpe[t]; the token
// embedding is large and the position embedding small, so the tied head's lens at every layer and
// position is the input token itself, almost surely; q and k are zero, so every head attends
// uniformly to the keys its mask allows and its entropy is the mean of ln(keys) over queries
// (GPT-3's banded layers: at most `band` keys).
TEST(Inspect, DecisiveModelKnownAnswers) {
  ModelConfig c = test::small(4, 2, 32, 24, 61);
  c.attention = AttentionKind::AlternatingBanded;
  c.band = 5;
  GPT m(c);
  m.init_gpt2(9);
  for (const auto& p : m.layout()) {
    float* x = m.params() + p.offset;
    const bool zero =
        p.name.find("c_proj") != std::string::npos || p.name.find("c_attn") != std::string::npos;
    for (size_t i = 0; i < p.numel; i++) {
      if (zero) x[i] = 0;
      if (p.name == "wte.weight") x[i] *= 50;
    }
  }
  std::mt19937 g(1);
  const std::vector<TokenId> ids = test::random_tokens(g, 20, c.vocab_size);
  const int T = static_cast<int>(ids.size());
  const Inspection r = inspect(m, ids, {.top_k = 2, .all_positions = true});
  for (int l = 0; l < c.n_layer; l++) {
    for (int t = 0; t < T; t++) {
      EXPECT_EQ(r.layers[l].lens[t][0].id, ids[t]) << "layer " << l << " position " << t;
      EXPECT_GT(r.layers[l].lens[t][0].prob, 0.95);
    }
    double want = 0;
    for (int q = 0; q < T; q++) want += std::log(c.banded(l) ? std::min(q + 1, c.band) : q + 1) / T;
    for (double e : r.layers[l].entropy) EXPECT_NEAR(e, want, 1e-5) << "layer " << l;
    EXPECT_NEAR(r.layers[l].uniform_entropy, want, 1e-12);
    // The stream passes through unchanged: ln_1's input is the block's output.
    EXPECT_NEAR(r.layers[l].ln_in[0].avg.norm, r.layers[l].out.avg.norm, 1e-4);
    EXPECT_NEAR(r.layers[l].ln_in[1].last.std, r.layers[l].out.last.std, 1e-5);
  }
  // The same model packed for inference (bf16 matrices, a half-precision cache) agrees on the lens.
  const GPT bf = test::packed_copy(m, ops::WeightType::BF16);
  const Inspection rb = inspect(const_cast<GPT&>(bf), ids, {.top_k = 1});
  for (int l = 0; l < c.n_layer; l++) EXPECT_EQ(rb.layers[l].lens[0][0].id, ids.back());
}

TEST(Inspect, JsonTextAndSvg) {
  GPT m = test::make_model(test::shapes()[0].cfg, 2);
  const std::vector<TokenId> ids = {5, 17, 3, 40};
  const Inspection r = inspect(m, ids, {.top_k = 3, .all_positions = true});
  const nlohmann::json j = inspection_json(r, nullptr);
  EXPECT_EQ(j["tokens"][1], "#17");
  EXPECT_EQ(j["ln"], "pre");
  ASSERT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][1]["lens"].size(), 4u);
  EXPECT_EQ(j["layers"][1]["lens"][3]["position"], 3);
  EXPECT_EQ(j["layers"][1]["lens"][3]["top"].size(), 3u);
  EXPECT_EQ(j["layers"][0]["entropy"].size(), 4u);
  EXPECT_TRUE(j["layers"][0]["ln_2"]["out"]["avg"].contains("norm"));
  EXPECT_DOUBLE_EQ(j["layers"][0]["ln_1"]["in"]["last"]["std"].get<double>(), r.layers[0].ln_in[0].last.std);
  const std::string text = inspection_text(r, nullptr);
  EXPECT_NE(text.find("attention entropy"), std::string::npos);
  EXPECT_NE(text.find("logit lens at position 3 (\"#40\")"), std::string::npos);
  const std::string path = ::testing::TempDir() + "inspect_lens.svg";
  write_inspection_svg(path, r, nullptr);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string svg(1 << 16, '\0');
  svg.resize(std::fread(svg.data(), 1, svg.size(), f));
  std::fclose(f);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("Logit lens"), std::string::npos);
  EXPECT_NE(svg.find("&quot;" + inspect_token_text(nullptr, r.layers[1].lens[2][0].id) + "&quot;"),
            std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // A heat map whose cells do not match its labels is refused.
  HeatMap bad;
  bad.row_labels = {"a"};
  bad.col_labels = {"x", "y"};
  bad.values = {0.5};
  EXPECT_THROW(heat_map_svg(bad), Error);
}

TEST(Inspect, BadInput) {
  GPT m = test::make_model(test::shapes()[0].cfg, 2);
  const int V = m.config().vocab_size, n_ctx = m.config().n_ctx;
  const std::vector<TokenId> ok = {1, 2, 3};
  EXPECT_THROW(inspect(m, std::vector<TokenId>{}), Error);
  EXPECT_THROW(inspect(m, std::vector<TokenId>(n_ctx + 1, 1)), Error);
  EXPECT_NO_THROW(inspect(m, std::vector<TokenId>(n_ctx, 1)));
  EXPECT_THROW(inspect(m, std::vector<TokenId>{1, static_cast<TokenId>(V)}), Error);
  EXPECT_THROW(inspect(m, ok, {.top_k = 0}), Error);
  EXPECT_THROW(inspect(m, ok, {.top_k = V + 1}), Error);
  EXPECT_NO_THROW(inspect(m, ok, {.top_k = V}));
}

}  // namespace
}  // namespace gpt
