// The playground's attention view (serve/attention.h) and the Decoder's attention capture: layer 0
// against a float64 recomputation from the raw weights, every layer's rows being probabilities
// with the causal (and GPT-3 band) mask, chunked prefills, unchanged logits, and bad requests.
// The other layers are checked against PyTorch in tests/torch_attention.py. Also: the playground's
// files as linked into the binary.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "generate/decoder.h"
#include "model/gpt.h"
#include "model_test_util.h"
#include "serve/attention.h"
#include "serve/playground.h"
#include "test_util.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {
namespace {

using test::small;

// GPT-2 initialisation with larger embeddings and perturbed LayerNorms and biases, so the
// attention is far from uniform and every parameter matters.
GPT make_model(const ModelConfig& cfg, uint64_t seed) {
  return test::perturbed_model(cfg, seed, 0.2f, 20.0f, [](const std::string& n) {
    return n == "wte.weight" || n == "wpe.weight" || n.find("c_attn.weight") != std::string::npos;
  });
}

std::vector<TokenId> random_ids(int T, int V, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<TokenId> ids(T);
  for (auto& t : ids) t = static_cast<TokenId>(g() % V);
  return ids;
}

// Layer 0's attention probabilities of one head in float64, from the GPT's raw parameters:
// x = wte + wpe, LayerNorm first for pre-LN, q and k from c_attn ([C, 3C]), softmax(q k / sqrt(hs)).
std::vector<double> layer0_reference(const GPT& m, const std::vector<TokenId>& ids, int head) {
  const ModelConfig& c = m.config();
  const int T = static_cast<int>(ids.size()), C = c.n_embd, hs = c.head_dim();
  const float* wte = m.param("wte.weight");
  const float* wpe = m.param("wpe.weight");
  const float* W = m.param("h.0.attn.c_attn.weight");
  const float* b = c.bias ? m.param("h.0.attn.c_attn.bias") : nullptr;
  const float* g = m.param("h.0.ln_1.weight");
  const float* beta = c.bias ? m.param("h.0.ln_1.bias") : nullptr;
  std::vector<double> q(static_cast<size_t>(T) * hs), k(static_cast<size_t>(T) * hs), x(C);
  for (int t = 0; t < T; t++) {
    for (int i = 0; i < C; i++) x[i] = double(wte[size_t(ids[t]) * C + i]) + wpe[size_t(t) * C + i];
    if (c.ln == LnPlacement::Pre) {
      double mean = 0, var = 0;
      for (double v : x) mean += v;
      mean /= C;
      for (double v : x) var += (v - mean) * (v - mean);
      var /= C;
      for (int i = 0; i < C; i++)
        x[i] = (x[i] - mean) / std::sqrt(var + c.ln_eps) * g[i] + (beta ? beta[i] : 0.0);
    }
    for (int d = 0; d < hs; d++) {
      const int qc = head * hs + d, kc = C + head * hs + d;
      double qs = b ? b[qc] : 0.0, ks = b ? b[kc] : 0.0;
      for (int i = 0; i < C; i++) {
        qs += x[i] * W[size_t(i) * 3 * C + qc];
        ks += x[i] * W[size_t(i) * 3 * C + kc];
      }
      q[size_t(t) * hs + d] = qs;
      k[size_t(t) * hs + d] = ks;
    }
  }
  std::vector<double> w(static_cast<size_t>(T) * T, 0.0);
  for (int i = 0; i < T; i++) {
    double mx = -1e300;
    std::vector<double> s(i + 1);
    for (int j = 0; j <= i; j++) {
      double d = 0;
      for (int e = 0; e < hs; e++) d += q[size_t(i) * hs + e] * k[size_t(j) * hs + e];
      s[j] = d / std::sqrt(double(hs));
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int j = 0; j <= i; j++) sum += (s[j] = std::exp(s[j] - mx));
    for (int j = 0; j <= i; j++) w[size_t(i) * T + j] = s[j] / sum;
  }
  return w;
}

TEST(Attention, Layer0MatchesFloat64Recomputation) {
  ModelConfig post = small(2, 2, 24, 40, 97);
  post.ln = LnPlacement::Post;
  for (const ModelConfig& cfg : {small(2, 4, 32, 48, 101), post}) {
    const GPT m = make_model(cfg, 7);
    GPT pm = test::packed_copy(m, ops::WeightType::F32);
    const std::vector<TokenId> ids = random_ids(30, cfg.vocab_size, 3);
    double peak = 0;
    for (int h = 0; h < cfg.n_head; h++) {
      const std::vector<float> got = attention_weights(pm, ids, 0, h);
      const std::vector<double> want = layer0_reference(m, ids, h);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); i++) {
        ASSERT_NEAR(got[i], want[i], 2e-5) << "head " << h << " entry " << i;
        if (i >= got.size() / 2) peak = std::max(peak, want[i]);  // rows 15.., 16+ keys each
      }
    }
    EXPECT_GT(peak, 0.5) << "the attention is nearly uniform: the test would not notice a wrong mask";
  }
}

// Every layer of a GPT-3 layout (odd layers banded): rows are probabilities over exactly the keys
// the mask lets the query see.
TEST(Attention, RowsAreMaskedProbabilities) {
  ModelConfig cfg = small(4, 4, 32, 48, 101);
  cfg.attention = AttentionKind::AlternatingBanded;
  cfg.band = 5;
  const GPT m = make_model(cfg, 11);
  for (auto type : {ops::WeightType::F32, ops::WeightType::BF16}) {  // bf16: the fp16 cache path
    GPT pm = test::packed_copy(m, type);
    const std::vector<TokenId> ids = random_ids(33, cfg.vocab_size, 5);
    const int T = static_cast<int>(ids.size());
    for (int l = 0; l < cfg.n_layer; l++)
      for (int h = 0; h < cfg.n_head; h++) {
        const std::vector<float> w = attention_weights(pm, ids, l, h);
        for (int i = 0; i < T; i++) {
          double sum = 0;
          for (int j = 0; j < T; j++) {
            const float v = w[size_t(i) * T + j];
            const bool visible = j <= i && (!cfg.banded(l) || j > i - cfg.band);
            if (visible) {
              EXPECT_GT(v, 0.0f) << "layer " << l << " head " << h << " (" << i << ", " << j << ")";
            } else {
              ASSERT_EQ(v, 0.0f) << "layer " << l << " head " << h << " (" << i << ", " << j << ")";
            }
            sum += v;
          }
          ASSERT_NEAR(sum, 1.0, 1e-5) << "layer " << l << " head " << h << " row " << i;
        }
      }
  }
}

// A prefill in chunks (blocks of one query included) captures the same map as one pass, the
// capture leaves the logits alone, and it is armed for one prefill only.
TEST(Attention, CaptureIsChunkSafeAndHarmless) {
  ModelConfig cfg = small(3, 2, 16, 32, 53);
  cfg.attention = AttentionKind::AlternatingBanded;
  cfg.band = 4;
  const GPT m = make_model(cfg, 21);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  const std::vector<TokenId> ids = random_ids(11, cfg.vocab_size, 9);
  const size_t T = ids.size(), V = cfg.vocab_size;
  for (int l = 0; l < cfg.n_layer; l++) {
    const std::vector<float> whole = attention_weights(pm, ids, l, 1);
    Decoder chunked(pm, 1, 5);  // passes of 5, 5 and 1 tokens
    std::vector<float> w(T * T, -1.0f);
    chunked.capture_attention(l, 1, w.data());
    chunked.prefill(0, ids);
    for (size_t i = 0; i < w.size(); i++)
      ASSERT_NEAR(w[i], whole[i], 1e-6) << "layer " << l << " entry " << i;
    Decoder plain(pm, 1, 5);
    plain.prefill(0, ids);
    for (size_t v = 0; v < V; v++) ASSERT_EQ(chunked.logits(0)[v], plain.logits(0)[v]);
    // disarmed: neither a step nor the next prefill writes to the buffer
    std::fill(w.begin(), w.end(), -1.0f);
    const int row = 0;
    const TokenId next = 3;
    chunked.step(std::span<const int>(&row, 1), std::span<const TokenId>(&next, 1));
    chunked.prefill(0, ids);
    for (float v : w) ASSERT_EQ(v, -1.0f);
  }
  const std::vector<TokenId> one = {7};
  EXPECT_EQ(attention_weights(pm, one, 1, 0), std::vector<float>{1.0f});
}

// The playground's logit lens (POST /v1/inspect): the inspection at every position, and bad requests.
TEST(Attention, InspectResponse) {
  const GPT m = make_model(small(2, 4, 32, 12, 40), 5);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  const CharTokenizer tok = CharTokenizer::from_text("abcdefghijklmnopqrstuvwxyz ,.");
  const nlohmann::json r = inspect_response(pm, tok, {{"prompt", "hello"}, {"top_k", 2}});
  EXPECT_EQ(r["tokens"].size(), 5u);
  ASSERT_EQ(r["layers"].size(), 2u);
  ASSERT_EQ(r["layers"][1]["lens"].size(), 5u);
  EXPECT_EQ(r["layers"][1]["lens"][0]["top"].size(), 2u);
  EXPECT_EQ(inspect_response(pm, tok, {{"prompt", "ab"}})["top_k"], 5);
  for (const nlohmann::json& bad :
       {nlohmann::json{{"prompt", "abc"}, {"top_k", 0}}, nlohmann::json{{"prompt", "abc"}, {"top_k", 21}},
        nlohmann::json{{"prompt", "abc"}, {"top_k", "5"}}, nlohmann::json{{"prompt", ""}},
        nlohmann::json{{"top_k", 3}}, nlohmann::json{{"prompt", "abcdefghijklm"}}})
    EXPECT_THROW(inspect_response(pm, tok, bad), Error) << bad.dump();
}

TEST(Attention, ResponseShapeAndBadRequests) {
  const ModelConfig cfg = small(2, 4, 32, 48, 40);
  const GPT m = make_model(cfg, 5);
  GPT pm = test::packed_copy(m, ops::WeightType::F32);
  const CharTokenizer tok = CharTokenizer::from_text("abcdefghijklmnopqrstuvwxyz ,.");
  const nlohmann::json r =
      attention_response(pm, tok, {{"prompt", "hello world"}, {"layer", 1}, {"head", 3}});
  ASSERT_EQ(r["tokens"].size(), 11u);
  EXPECT_EQ(r["tokens"][0], "h");
  EXPECT_EQ(r["tokens"][5], " ");
  EXPECT_EQ(r["layer"], 1);
  EXPECT_EQ(r["head"], 3);
  EXPECT_EQ(r["n_layer"], 2);
  EXPECT_EQ(r["n_head"], 4);
  EXPECT_EQ(r["banded"], false);
  ASSERT_EQ(r["weights"].size(), 11u);
  for (const auto& row : r["weights"]) ASSERT_EQ(row.size(), 11u);
  EXPECT_EQ(r["weights"][0][0].get<double>(), 1.0);
  EXPECT_EQ(r["weights"][3][4].get<double>(), 0.0);
  // defaults: layer 0, head 0
  EXPECT_EQ(attention_response(pm, tok, {{"prompt", "abc"}})["layer"], 0);

  auto fails = [&](const nlohmann::json& req, const std::string& words) {
    try {
      attention_response(pm, tok, req);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << req.dump() << ": " << e.what();
      return;
    }
    ADD_FAILURE() << req.dump() << " was accepted";
  };
  fails(nlohmann::json::array({1, 2}), "JSON object");
  fails({{"layer", 0}}, "'prompt' is required");
  fails({{"prompt", 5}}, "'prompt' must be a string");
  fails({{"prompt", ""}}, "empty");
  fails({{"prompt", "abc"}, {"layer", 2}}, "layer 2 is out of range");
  fails({{"prompt", "abc"}, {"layer", -1}}, "layer -1 is out of range");
  fails({{"prompt", "abc"}, {"head", 4}}, "head 4 is out of range");
  fails({{"prompt", "abc"}, {"head", "1"}}, "'head' must be an integer");
  fails({{"prompt", "abc"}, {"layer", 0.5}}, "'layer' must be an integer");
  fails({{"prompt", std::string(49, 'a')}}, "49 tokens, more than the 48");
  fails({{"prompt", std::string(100000, 'a')}}, "too long");
}

// The linked-in bytes are the files in web/playground/, byte for byte, with their content types.
TEST(Playground, AssetsAreTheFiles) {
  const std::pair<const char*, const char*> files[] = {
      {"/index.html", "index.html"}, {"/app.js", "app.js"}, {"/style.css", "style.css"}};
  for (const auto& [path, file] : files) {
    const auto asset = playground_asset(path);
    ASSERT_TRUE(asset) << path;
    EXPECT_EQ(asset->first, test::read_source(std::string("web/playground/") + file)) << path;
  }
  EXPECT_EQ(playground_asset("/")->first, playground_asset("/index.html")->first);
  EXPECT_EQ(playground_asset("/")->second, "text/html; charset=utf-8");
  EXPECT_EQ(playground_asset("/app.js")->second, "text/javascript; charset=utf-8");
  EXPECT_EQ(playground_asset("/style.css")->second, "text/css; charset=utf-8");
  for (const char* other : {"", "/index", "/app.js/", "/../CMakeLists.txt", "/favicon.ico", "/v1/models"})
    EXPECT_FALSE(playground_asset(other)) << other;
}

}  // namespace
}  // namespace gpt
