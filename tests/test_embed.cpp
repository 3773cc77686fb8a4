// Embeddings (generate/embed.h, docs/embeddings.md): pooled vectors against the hidden states
// computed directly with GPT::forward_hidden, batching against one input at a time, normalisation,
// refusals; the /v1/embeddings body parser and response; the scheduler running embeddings between
// decoder steps. tests/hf_embeddings.py checks `gpt embed` against transformers' GPT2Model.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "backend/staged_backend.h"
#include "core/error.h"
#include "generate/embed.h"
#include "model_test_util.h"
#include "serve/openai_api.h"
#include "serve/scheduler.h"

namespace gpt {
namespace {

using test::make_model;

std::vector<std::vector<TokenId>> inputs_for(const ModelConfig& cfg, uint64_t seed) {
  std::mt19937 g(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int> id(0, cfg.vocab_size - 1);
  std::vector<std::vector<TokenId>> in;
  for (int len : {5, 1, cfg.n_ctx, 17, 3, 17, 9, cfg.n_ctx - 1, 2}) {
    std::vector<TokenId> s(len);
    for (auto& t : s) t = static_cast<TokenId>(id(g));
    in.push_back(std::move(s));
  }
  return in;
}

// The pooled vector straight from the hidden states of the input alone, in double.
std::vector<double> direct(GPT& m, const std::vector<TokenId>& ids, Pooling how) {
  const int T = static_cast<int>(ids.size()), C = m.config().n_embd;
  m.forward_hidden(ids.data(), 1, T);
  const float* h = m.hidden();
  std::vector<double> v(C, 0.0);
  if (how == Pooling::Last) {
    for (int c = 0; c < C; c++) v[c] = h[static_cast<size_t>(T - 1) * C + c];
  } else {
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++) v[c] += h[static_cast<size_t>(t) * C + c];
    for (auto& x : v) x /= T;
  }
  return v;
}

// max |a - b| over max |b|.
double rel_diff(const float* a, const std::vector<double>& b) {
  double d = 0, r = 0;
  for (size_t i = 0; i < b.size(); i++) {
    d = std::max(d, std::abs(a[i] - b[i]));
    r = std::max(r, std::abs(b[i]));
  }
  return r > 0 ? d / r : d;
}

TEST(Embed, PoolingMatchesTheHiddenStates) {
  for (const auto& shape : test::shapes()) {
    SCOPED_TRACE(shape.name);
    GPT m = make_model(shape.cfg, 11);
    const auto in = inputs_for(shape.cfg, 3);
    const int C = shape.cfg.n_embd;
    for (Pooling how : {Pooling::Mean, Pooling::Last}) {
      SCOPED_TRACE(pooling_name(how));
      EmbedOptions opt;
      opt.pooling = how;
      const std::vector<float> got = embed(m, in, opt);
      ASSERT_EQ(got.size(), in.size() * C);
      for (size_t i = 0; i < in.size(); i++) {
        const std::vector<double> want = direct(m, in[i], how);
        EXPECT_LT(rel_diff(got.data() + i * C, want), 1e-5) << "input " << i;
      }
    }
  }
}

TEST(Embed, MeanAndLastDifferAndLastIsTheLastPosition) {
  // A one-token input: both poolings are that position's state.
  const ModelConfig cfg = test::shapes()[0].cfg;
  GPT m = make_model(cfg, 5);
  const std::vector<std::vector<TokenId>> one{{7}}, two{{7, 8, 9}};
  EmbedOptions mean, last;
  last.pooling = Pooling::Last;
  EXPECT_EQ(embed(m, one, mean), embed(m, one, last));
  const auto a = embed(m, two, mean), b = embed(m, two, last);
  EXPECT_GT(test::max_diff(a.data(), b.data(), a.size()), 1e-3f);
}

TEST(Embed, BatchingGivesTheSameVectorsAsOneAtATime) {
  for (const auto& shape : test::shapes()) {
    SCOPED_TRACE(shape.name);
    const ModelConfig& cfg = shape.cfg;
    GPT m = make_model(cfg, 12);
    // The inference model (packed f32 matrices), as `gpt embed` and the server load it.
    GPT p = test::packed_copy(m, ops::WeightType::F32);
    const auto in = inputs_for(cfg, 4);
    const size_t C = cfg.n_embd;
    for (Pooling how : {Pooling::Mean, Pooling::Last}) {
      EmbedOptions opt;
      opt.pooling = how;
      const std::vector<float> all = embed(p, in, opt);  // in batches of mixed lengths
      opt.batch_tokens = 1;                              // every input alone
      const std::vector<float> alone = embed(p, in, opt);
      EmbedOptions big = opt;
      big.batch_tokens = 1 << 20;  // one batch as long as the longest, half-padding permitting
      const std::vector<float> one = embed(p, in, big);
      for (size_t i = 0; i < in.size(); i++) {
        std::vector<double> want(alone.begin() + i * C, alone.begin() + (i + 1) * C);
        EXPECT_LT(rel_diff(all.data() + i * C, want), 1e-5) << pooling_name(how) << " input " << i;
        EXPECT_LT(rel_diff(one.data() + i * C, want), 1e-5) << pooling_name(how) << " input " << i;
        // The packed model and the training-storage model agree too.
        EXPECT_LT(rel_diff(alone.data() + i * C, direct(m, in[i], how)), 1e-5);
      }
    }
  }
}

TEST(Embed, TheStagedBackendGivesTheSameVectors) {
  const ModelConfig cfg = test::shapes()[0].cfg;
  GPT m = make_model(cfg, 13);
  // A device model keeps its training storage (io/model_dir.h's load_for_inference does the same).
  GPT d(cfg, staged_cpu_backend());
  std::copy(m.params(), m.params() + m.num_parameters(), d.params());
  const auto in = inputs_for(cfg, 5);
  const auto a = embed(m, in), b = embed(d, in);
  EXPECT_LT(test::max_diff(a.data(), b.data(), a.size()), 1e-5f);
}

TEST(Embed, NormalizeGivesUnitVectorsInTheSameDirection) {
  const ModelConfig cfg = test::shapes()[0].cfg;
  GPT m = make_model(cfg, 6);
  const auto in = inputs_for(cfg, 6);
  const int C = cfg.n_embd;
  for (Pooling how : {Pooling::Mean, Pooling::Last}) {
    EmbedOptions opt;
    opt.pooling = how;
    const auto raw = embed(m, in, opt);
    opt.normalize = true;
    const auto unit = embed(m, in, opt);
    for (size_t i = 0; i < in.size(); i++) {
      double ss = 0, uu = 0;
      for (int c = 0; c < C; c++) {
        ss += static_cast<double>(raw[i * C + c]) * raw[i * C + c];
        uu += static_cast<double>(unit[i * C + c]) * unit[i * C + c];
      }
      EXPECT_NEAR(uu, 1.0, 1e-5);
      for (int c = 0; c < C; c++) EXPECT_NEAR(unit[i * C + c], raw[i * C + c] / std::sqrt(ss), 1e-6);
    }
  }
}

TEST(Embed, RefusesInputsThatCannotRun) {
  const ModelConfig cfg = test::shapes()[0].cfg;  // n_ctx 48, vocab 101
  GPT m = make_model(cfg, 7);
  auto refused = [&](std::vector<std::vector<TokenId>> in, const std::string& what) {
    try {
      embed(m, in);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  refused({{1, 2}, {}}, "input 1 is empty");
  refused({std::vector<TokenId>(cfg.n_ctx + 1, 3)},
          "input 0 has 49 tokens, more than the model's context of 48");
  refused({{1}, {1}, {5, 101}}, "input 2: token id 101 is out of range for a vocabulary of 101");
  EXPECT_TRUE(embed(m, std::vector<std::vector<TokenId>>{}).empty());
  const std::vector<std::vector<TokenId>> full{std::vector<TokenId>(cfg.n_ctx, 3)};
  EXPECT_EQ(embed(m, full).size(), static_cast<size_t>(cfg.n_embd));
}

TEST(Embed, PadRight) {
  const std::vector<TokenId> a{1, 2, 3}, b{4};
  const std::vector<const std::vector<TokenId>*> rows{&a, &b};
  const PaddedBatch p = pad_right(rows, 9);
  EXPECT_EQ(p.B, 2);
  EXPECT_EQ(p.T, 3);
  EXPECT_EQ(p.ids, (std::vector<TokenId>{1, 2, 3, 4, 9, 9}));
  EXPECT_EQ(p.last, (std::vector<int>{2, 0}));
  EXPECT_EQ(parse_pooling("mean"), Pooling::Mean);
  EXPECT_EQ(parse_pooling("last"), Pooling::Last);
  EXPECT_FALSE(parse_pooling("max"));
}

}  // namespace

namespace serve {
namespace {

struct Case {
  const char* body;
  int status;         // 0: accepted
  const char* param;  // the error's param when refused
};

TEST(ServeEmbeddings, ValidationTable) {
  const Case cases[] = {
      {R"({"model":"m","input":"hi"})", 0, ""},
      {R"({"input":["a","b"],"encoding_format":"base64","user":"u"})", 0, ""},
      {R"({"input":[1,2,3],"encoding_format":"float","dimensions":32})", 0, ""},
      {R"({"input":[[1,2],[3]],"pooling":"last","normalize":false})", 0, ""},
      {R"({"input":"hi","encoding_format":null,"dimensions":null,"model":null})", 0, ""},
      {R"({"model":"m"})", 400, "input"},
      {R"({"input":null})", 400, "input"},
      {R"({"input":""})", 400, "input"},
      {R"({"input":[]})", 400, "input"},
      {R"({"input":["a",""]})", 400, "input"},
      {R"({"input":[[1],[]]})", 400, "input"},
      {R"({"input":["a",1]})", 400, "input"},
      {R"({"input":[1,"a"]})", 400, "input"},
      {R"({"input":[[1],2]})", 400, "input"},
      {R"({"input":[-1]})", 400, "input"},
      {R"({"input":[1.5]})", 400, "input"},
      {R"({"input":[4294967296]})", 400, "input"},
      {R"({"input":[true]})", 400, "input"},
      {R"({"input":[{"a":1}]})", 400, "input"},
      {R"({"input":7})", 400, "input"},
      {R"({"input":{"text":"a"}})", 400, "input"},
      {R"({"input":"a","encoding_format":"int8"})", 400, "encoding_format"},
      {R"({"input":"a","encoding_format":1})", 400, "encoding_format"},
      {R"({"input":"a","dimensions":0})", 400, "dimensions"},
      {R"({"input":"a","dimensions":"32"})", 400, "dimensions"},
      {R"({"input":"a","pooling":"max"})", 400, "pooling"},
      {R"({"input":"a","normalize":"yes"})", 400, "normalize"},
      {R"({"input":"a","user":3})", 400, "user"},
      {R"({"input":"a","model":3})", 400, "model"},
      {R"({"input":"a","temperature":0})", 400, "temperature"},
      {R"(["a"])", 400, ""},
      {R"({"input":"a")", 400, ""},
  };
  for (const Case& c : cases) {
    try {
      const EmbeddingRequest r = parse_embedding_request(c.body);
      EXPECT_EQ(c.status, 0) << c.body;
      EXPECT_GT(r.inputs(), 0u) << c.body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, c.status) << c.body << ": " << e.message;
      EXPECT_EQ(e.param, c.param) << c.body << ": " << e.message;
      EXPECT_FALSE(e.message.empty());
    }
  }
  std::string many = R"({"input":[)";
  for (size_t i = 0; i <= kMaxEmbeddingInputs; i++) many += i ? ",\"a\"" : "\"a\"";
  many += "]}";
  try {
    parse_embedding_request(many);
    ADD_FAILURE() << "2049 inputs accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "input");
  }
}

TEST(ServeEmbeddings, ParsedFields) {
  EmbeddingRequest r = parse_embedding_request(R"({"input":[[1,2],[3]],"encoding_format":"base64"})");
  EXPECT_TRUE(r.texts.empty());
  EXPECT_EQ(r.ids, (std::vector<std::vector<TokenId>>{{1, 2}, {3}}));
  EXPECT_TRUE(r.base64);
  EXPECT_EQ(r.pooling, "mean");
  EXPECT_TRUE(r.normalize);
  r = parse_embedding_request(R"({"input":[5,6],"pooling":"last","normalize":false,"dimensions":7})");
  EXPECT_EQ(r.ids, (std::vector<std::vector<TokenId>>{{5, 6}}));
  EXPECT_EQ(r.pooling, "last");
  EXPECT_FALSE(r.normalize);
  EXPECT_EQ(r.dimensions, 7);
  r = parse_embedding_request(R"({"input":["x","y z"]})");
  EXPECT_EQ(r.texts, (std::vector<std::string>{"x", "y z"}));
  EXPECT_FALSE(r.base64);
}

TEST(ServeEmbeddings, Base64AndResponse) {
  // RFC 4648's test vectors.
  const char* want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  const std::string foobar = "foobar";
  for (size_t n = 0; n <= 6; n++) EXPECT_EQ(base64_encode(foobar.substr(0, n)), want[n]);
  EmbeddingRequest r;
  r.ids = {{1}, {2}};
  const std::vector<float> v{1.0f, -2.5f, 0.0f, 3.0f};
  nlohmann::json j = embedding_response(r, "tiny", v, 2, 5);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][1]["object"], "embedding");
  EXPECT_EQ(j["data"][1]["index"], 1);
  EXPECT_EQ(j["data"][0]["embedding"], nlohmann::json({1.0, -2.5}));
  r.base64 = true;
  j = embedding_response(r, "tiny", v, 2, 5);
  // 1.0f = 00 00 80 3f, -2.5f = 00 00 20 c0 (little-endian)
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), v.data(), 8);
  EXPECT_EQ(bytes, std::string("\x00\x00\x80\x3f\x00\x00\x20\xc0", 8));
  EXPECT_EQ(j["data"][0]["embedding"], base64_encode(bytes));
}

TEST(ServeEmbeddings, SchedulerRunsThemBetweenDecoderSteps) {
  const ModelConfig cfg = test::shapes()[0].cfg;
  GPT m = test::packed_copy(make_model(cfg, 21), ops::WeightType::F32);
  const auto in = inputs_for(cfg, 8);
  EmbedOptions opt;
  opt.normalize = true;
  const std::vector<float> want = embed(m, in, opt);
  Scheduler sched(m, nullptr, 2);
  // Streams decoding while the embeddings run, in pieces of one input at a time.
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 2; i++) {
    EngineRequest er;
    er.prompts = {{static_cast<TokenId>(i + 1), 2, 3}};
    er.max_tokens = 30;
    er.sampling.greedy = true;
    jobs.push_back(sched.submit(er));
  }
  opt.batch_tokens = 1;
  std::vector<std::shared_ptr<EmbedJob>> ej;
  for (int k = 0; k < 3; k++) ej.push_back(sched.submit_embedding(in, opt));
  for (auto& j : ej) {
    while (!j->wait(std::chrono::milliseconds(100))) {
    }
    EXPECT_EQ(j->error(), "");
    ASSERT_EQ(j->vectors().size(), want.size());
    EXPECT_LT(test::max_diff(j->vectors().data(), want.data(), want.size()), 1e-5f);
  }
  for (auto& j : jobs) collect(*j);
  const SchedulerMetrics mt = sched.metrics();
  EXPECT_EQ(mt.embed_requests, 3u);
  EXPECT_EQ(mt.embed_inputs, 3 * in.size());
  size_t tokens = 0;
  for (const auto& s : in) tokens += s.size();
  EXPECT_EQ(mt.embed_tokens, 3 * tokens);
  EXPECT_EQ(ej[0]->tokens(), static_cast<int>(tokens));
  // Refused at once: an input that can never run.
  EXPECT_THROW(sched.submit_embedding({{1}, {}}, opt), Error);
  EXPECT_THROW(sched.submit_embedding({}, opt), Error);
  // A cancelled job ends (cancelled, or done if it won the race); a stopped scheduler ends the rest.
  auto c = sched.submit_embedding(in, opt);
  c->cancel();
  while (!c->wait(std::chrono::milliseconds(100))) {
  }
  sched.stop();
  EXPECT_THROW(sched.submit_embedding(in, opt), Error);
}

}  // namespace
}  // namespace serve
}  // namespace gpt
