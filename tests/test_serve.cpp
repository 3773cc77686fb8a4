// gpt serve: the request parser's validation table, and the continuous-batching scheduler
// against the single-request Generator (the same greedy tokens whatever else runs), requests
// joining mid-flight and queueing beyond the slots, cancellation freeing a slot; the Host, Origin
// and key checks, and the server itself over raw sockets (pipelining, framing, a slow client, a
// prompt stop). tests/serve_attacks.py attacks the whole `gpt serve` process.
#include <gtest/gtest.h>

#include <algorithm>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "backend/staged_backend.h"
#include "core/error.h"
#include "generate/decoder.h"
#include "generate/generator.h"
#include "generate/utf8_stream.h"
#include "model/gpt.h"
#include "serve/http_checks.h"
#include "serve/openai_api.h"
#include "serve/scheduler.h"
#include "serve/server.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt::serve {
namespace {

// ---- parsing ----------------------------------------------------------------------------------------

struct Case {
  Endpoint ep;
  const char* body;
  int status;         // 0: accepted
  const char* param;  // the error's param when refused
};

TEST(ServeApi, ValidationTable) {
  const auto C = Endpoint::Completions, H = Endpoint::Chat;
  const Case cases[] = {
      {C, R"({"model":"m","prompt":"hi"})", 0, ""},
      {C, R"({"prompt":["a","b"],"n":2})", 0, ""},
      {C, R"({"prompt":[1,2,3],"max_tokens":4,"temperature":0,"stop":"x","seed":7,"logprobs":3})", 0, ""},
      {C, R"({"prompt":[[1,2],[3]],"stream":true,"stream_options":{"include_usage":true}})", 0, ""},
      {C, R"({"prompt":"hi","user":"u","presence_penalty":0,"logit_bias":{},"echo":false,"top_k":5})", 0, ""},
      {C, R"({"prompt":"hi","max_tokens":null,"temperature":null})", 0, ""},
      {H, R"({"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":2})", 0, ""},
      {H,
       R"({"messages":[{"role":"system","content":[{"type":"text","text":"a"}]}],"max_completion_tokens":3})",
       0, ""},
      {C, R"({"prompt":"hi")", 400, ""},            // malformed JSON
      {C, R"([1,2])", 400, ""},                     // not an object
      {C, R"({"model":"m"})", 400, "prompt"},       // no prompt
      {C, R"({"prompt":5})", 400, "prompt"},        // wrong type
      {C, R"({"prompt":[]})", 400, "prompt"},       // empty list
      {C, R"({"prompt":[1,"a"]})", 400, "prompt"},  // mixed list
      {C, R"({"prompt":[-1]})", 400, "prompt"},     // negative id
      {C, R"({"prompt":"hi","max_tokens":"8"})", 400, "max_tokens"},
      {C, R"({"prompt":"hi","max_tokens":0})", 0, ""},  // nothing generated (with echo: the prompt scored)
      {C, R"({"prompt":"hi","max_tokens":-1})", 400, "max_tokens"},
      {H, R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":0})", 400, "max_tokens"},
      {C, R"({"prompt":"hi","max_tokens":1.5})", 400, "max_tokens"},
      {C, R"({"prompt":"hi","max_tokens":1e300})", 400, "max_tokens"},
      {C, R"({"prompt":"hi","seed":18446744073709551615})", 400, "seed"},
      {C, R"({"prompt":"hi","seed":-5,"max_tokens":4.0})", 0, ""},
      {C, R"({"prompt":"hi","temperature":3})", 400, "temperature"},
      {C, R"({"prompt":"hi","temperature":"hot"})", 400, "temperature"},
      {C, R"({"prompt":"hi","top_p":0})", 400, "top_p"},
      {C, R"({"prompt":"hi","n":0})", 400, "n"},
      {C, R"({"prompt":"hi","n":9})", 400, "n"},  // more choices than the 8 slots below
      {C, R"({"prompt":["a","b","c"],"n":3})", 400, "n"},
      {C, R"({"prompt":"hi","stop":["a","b","c","d","e"]})", 400, "stop"},
      {C, R"({"prompt":"hi","stop":""})", 400, "stop"},
      {C, R"({"prompt":"hi","stop":3})", 400, "stop"},
      {C, R"({"prompt":"hi","logprobs":21})", 400, "logprobs"},
      {C, R"({"prompt":"hi","logprobs":true})", 400, "logprobs"},
      {C, R"({"prompt":"hi","stream":"yes"})", 400, "stream"},
      {C, R"({"prompt":[[1,2],[3]],"echo":true,"logprobs":1,"max_tokens":0})", 0, ""},  // as lm-eval sends it
      {C, R"({"prompt":"hi","echo":1})", 400, "echo"},
      {H, R"({"messages":[{"role":"user","content":"hi"}],"echo":true})", 400, "echo"},  // chat has no echo
      {C, R"({"prompt":"hi","presence_penalty":0.5,"frequency_penalty":-2,"logit_bias":{"50256":-100,"11":2.5}})", 0,
       ""},
      {C, R"({"prompt":"hi","presence_penalty":2.5})", 400, "presence_penalty"},
      {C, R"({"prompt":"hi","frequency_penalty":"x"})", 400, "frequency_penalty"},
      {C, R"({"prompt":"hi","logit_bias":[]})", 400, "logit_bias"},
      {C, R"({"prompt":"hi","logit_bias":{"x":1}})", 400, "logit_bias"},
      {C, R"({"prompt":"hi","logit_bias":{"-3":1}})", 400, "logit_bias"},
      {C, R"({"prompt":"hi","logit_bias":{"5":101}})", 400, "logit_bias.5"},
      {C, R"({"prompt":"hi","frobnicate":1})", 400, "frobnicate"},
      {C, R"({"prompt":"hi","stream_options":{"include_usage":true}})", 400, "stream_options"},
      {C, R"({"prompt":"hi","seed":"s"})", 400, "seed"},
      {C, R"({"messages":[{"role":"user","content":"hi"}]})", 400, "messages"},  // chat body, completions
      {H, R"({"prompt":"hi"})", 400, "prompt"},
      {H, R"({"messages":[]})", 400, "messages"},
      {H, R"({"messages":"hi"})", 400, "messages"},
      {H, R"({"messages":[{"role":"wizard","content":"hi"}]})", 400, "messages.role"},
      {H, R"({"messages":[{"content":"hi"}]})", 400, "messages.role"},
      {H, R"({"messages":[{"role":"user","content":5}]})", 400, "messages.content"},
      {H, R"({"messages":[{"role":"user","content":"hi","tool_calls":[]}]})", 400, "messages.tool_calls"},
      {H, R"({"messages":[{"role":"user","content":"hi"}],"top_logprobs":2})", 400, "top_logprobs"},
      {H, R"({"messages":[{"role":"user","content":"hi"}],"logprobs":3})", 400, "logprobs"},
      {H, R"({"messages":[{"role":"user","content":"hi"}],"tools":[]})", 400, "tools"},
  };
  ApiLimits limits;
  limits.max_choices = 8;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    try {
      const CompletionRequest r = parse_request(c.body, c.ep, limits);
      EXPECT_EQ(c.status, 0) << "accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, c.status) << e.message;
      EXPECT_EQ(e.param, c.param) << e.message;
      const auto j = error_json(e);
      EXPECT_TRUE(j["error"].contains("message") && j["error"].contains("type") &&
                  j["error"].contains("code"));
    }
  }
}

TEST(ServeApi, ParsedValues) {
  const auto r = parse_request(
      R"({"prompt":"hi","max_tokens":5,"temperature":0.5,"top_p":0.9,"n":2,"stop":["a","b"],"seed":3,"logprobs":2})",
      Endpoint::Completions);
  EXPECT_EQ(r.prompt_texts, std::vector<std::string>{"hi"});
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 0);  // OpenAI has no top-k
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.sampling.seed, 3u);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_FALSE(r.echo);
  const auto e = parse_request(R"({"prompt":[[5,6,7]],"echo":true,"max_tokens":0,"logprobs":1})",
                               Endpoint::Completions);
  EXPECT_TRUE(e.echo);
  EXPECT_EQ(*e.max_tokens, 0);
  EXPECT_EQ(e.prompt_ids, (std::vector<std::vector<TokenId>>{{5, 6, 7}}));
  const auto p = parse_request(
      R"({"prompt":"hi","frequency_penalty":0.25,"presence_penalty":-1.5,"logit_bias":{"7":-100,"50256":3}})",
      Endpoint::Completions);
  EXPECT_FLOAT_EQ(p.sampling.frequency_penalty, 0.25f);
  EXPECT_FLOAT_EQ(p.sampling.presence_penalty, -1.5f);
  auto bias = p.sampling.logit_bias;
  std::sort(bias.begin(), bias.end());
  EXPECT_EQ(bias, (std::vector<std::pair<TokenId, float>>{{7, -100.0f}, {50256, 3.0f}}));
  const auto c =
      parse_request(R"({"messages":[{"role":"user","content":"hi"}],"logprobs":true})", Endpoint::Chat);
  EXPECT_EQ(c.logprobs, 0);
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages[0].role, "user");
  EXPECT_FALSE(c.max_tokens.has_value());
}

TEST(ServeApi, DeepNestingIsRefused) {
  const std::string deep = R"({"prompt":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_THROW(parse_request(deep, Endpoint::Completions), ApiError);
}

// ---- the scheduler ----------------------------------------------------------------------------------

// A tiny model over the GPT-2 vocabulary with decisive logits (large embeddings), packed.
struct TinyModel {
  GPT model;
  std::shared_ptr<const Tokenizer> tok;
};

TinyModel tiny_model(std::shared_ptr<const Tokenizer> tok = gpt2_tokenizer(), int width = 32,
                     Backend* device = nullptr, int n_ctx = 64) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = width;
  c.n_ctx = n_ctx;
  c.vocab_size = 50257;
  GPT m(c, device ? *device : cpu_backend());
  m.init_gpt2(11);
  for (const auto& p : m.layout())
    if (p.name == "wte.weight")
      for (size_t i = 0; i < p.numel; i++) m.params()[p.offset + i] *= 8.0f;
  if (!device) m.pack(ops::WeightType::F32);  // on a device: its fp32 masters, as a GPU serves
  return {std::move(m), std::move(tok)};
}

struct JobOutput {
  std::vector<std::vector<TokenId>> ids;
  std::vector<std::string> text, finish;
};

JobOutput drain(Job& job) {
  JobOutput r;
  r.ids.resize(job.choices());
  r.text.resize(job.choices());
  r.finish.resize(job.choices());
  std::vector<Event> evs;
  for (bool more = true; more;) {
    evs.clear();
    more = job.wait(evs, std::chrono::milliseconds(100));
    for (const auto& ev : evs) {
      r.ids[ev.choice].push_back(ev.token.id);
      r.text[ev.choice] += ev.token.text;
      if (ev.last) r.finish[ev.choice] = ev.finish_reason;
    }
  }
  return r;
}

EngineRequest request(const std::vector<TokenId>& prompt, int max_tokens, float temperature = 0, int n = 1,
                      uint64_t seed = 0) {
  EngineRequest r;
  r.prompts = {prompt};
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.top_k = 0;
  r.sampling.seed = seed;
  r.n = n;
  return r;
}

std::vector<std::vector<TokenId>> prompts() {
  return {{464, 2068, 7586},
          {15496, 11, 995, 0, 314},
          {40},
          {1212, 318, 257, 1332, 286, 262, 6801, 1080},
          {50256, 464, 3290},
          {2215, 345},
          {3666, 1438, 318}};
}

TEST(ServeScheduler, ConcurrentGreedyMatchesGeneratorOneAtATime) {
  TinyModel pm = tiny_model();
  const auto ps = prompts();
  const int max_tokens[] = {12, 5, 20, 9, 15, 3, 18};
  // The reference: each request alone through the single-request Generator.
  Generator gen(pm.model, pm.tok);
  std::vector<SampleResult> want;
  for (size_t i = 0; i < ps.size(); i++) {
    GenerateSettings s;
    s.max_new_tokens = max_tokens[i];
    s.sampling.greedy = true;
    want.push_back(gen.generate(ps[i], s)[0]);
  }
  // All at once through 3 slots: 4 wait in the queue and join as others finish (mid-flight).
  Scheduler sched(pm.model, pm.tok, 3);
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < ps.size(); i++) jobs.push_back(sched.submit(request(ps[i], max_tokens[i])));
  for (size_t i = 0; i < ps.size(); i++) {
    const JobOutput r = drain(*jobs[i]);
    EXPECT_EQ(r.ids[0], want[i].ids) << "request " << i;
    EXPECT_EQ(r.text[0], want[i].text) << "request " << i;
    EXPECT_EQ(r.finish[0], want[i].finish == FinishReason::Length ? "length" : "stop");
  }
  const SchedulerMetrics m = sched.metrics();
  EXPECT_EQ(m.requests_total, ps.size());
  EXPECT_EQ(m.requests_active, 0);
  EXPECT_EQ(m.slots_busy, 0);
  EXPECT_GT(m.step_rows, m.steps);  // steps did run several rows at once
  EXPECT_EQ(m.ttft.count, ps.size());
}

// Any backend serves: the same weights on the staged backend (device memory, as a GPU holds them,
// in training storage) give the CPU's packed model's greedy tokens, through the same scheduler.
TEST(ServeScheduler, ADeviceBackendServesTheSameTokens) {
  StagedCpuBackend staged;
  TinyModel cpu = tiny_model();
  TinyModel dev = tiny_model(gpt2_tokenizer(), 32, &staged);
  ASSERT_FALSE(dev.model.packed());
  const auto ps = prompts();
  Scheduler a(cpu.model, cpu.tok, 3), b(dev.model, dev.tok, 3);
  std::vector<std::shared_ptr<Job>> ja, jb;
  for (size_t i = 0; i < ps.size(); i++) {
    ja.push_back(a.submit(request(ps[i], 16)));
    jb.push_back(b.submit(request(ps[i], 16)));
  }
  for (size_t i = 0; i < ps.size(); i++) {
    const JobOutput x = drain(*ja[i]), y = drain(*jb[i]);
    EXPECT_EQ(x.ids[0], y.ids[0]) << "request " << i;
    EXPECT_EQ(x.text[0], y.text[0]) << "request " << i;
  }
  EXPECT_GT(staged.uploads, 0);  // it ran on the staged backend's memory
}

TEST(ServeScheduler, JoiningMidFlightChangesNothing) {
  TinyModel pm = tiny_model(gpt2_tokenizer(), 256);  // slow enough that b joins a running a
  const std::vector<TokenId> pa = {464, 2068, 7586}, pb = {40, 588, 257};
  Generator gen(pm.model, pm.tok);
  GenerateSettings s;
  s.max_new_tokens = 55;
  s.sampling.greedy = true;
  const auto wa = gen.generate(pa, s)[0], wb = gen.generate(pb, s)[0];
  Scheduler sched(pm.model, pm.tok, 2);
  auto a = sched.submit(request(pa, 55));
  std::vector<Event> first;
  while (first.size() < 5) a->wait(first, std::chrono::milliseconds(100));  // a is mid-flight
  auto b = sched.submit(request(pb, 55));
  JobOutput ra = drain(*a);
  for (auto it = first.rbegin(); it != first.rend(); ++it) ra.ids[0].insert(ra.ids[0].begin(), it->token.id);
  EXPECT_EQ(ra.ids[0], wa.ids);
  EXPECT_EQ(drain(*b).ids[0], wb.ids);
  EXPECT_GT(sched.metrics().step_rows, sched.metrics().steps);  // they shared steps
}

TEST(ServeScheduler, SeededSamplesMatchGenerator) {
  TinyModel pm = tiny_model();
  const std::vector<TokenId> p = {464, 2068, 7586};
  Generator gen(pm.model, pm.tok);
  GenerateSettings s;
  s.max_new_tokens = 10;
  s.num_samples = 2;
  s.sampling.temperature = 1.0f;
  s.sampling.top_k = 0;
  s.sampling.seed = 42;
  const auto want = gen.generate(p, s);
  Scheduler sched(pm.model, pm.tok, 4);
  // Another request runs beside it: a row's random stream is its own.
  auto other = sched.submit(request({40, 588}, 10, 0.8f, 1, 7));
  auto job = sched.submit(request(p, 10, 1.0f, 2, 42));
  const JobOutput r = drain(*job);
  drain(*other);
  ASSERT_EQ(r.ids.size(), 2u);
  EXPECT_EQ(r.ids[0], want[0].ids);
  EXPECT_EQ(r.ids[1], want[1].ids);
  EXPECT_NE(r.ids[0], r.ids[1]);
}

// OpenAI's penalties and logit bias: the server and `gpt generate` (Generator) count the same
// generated tokens and give the same tokens; the settings do change them.
TEST(ServeScheduler, PenaltiesAndLogitBiasMatchGenerator) {
  TinyModel pm = tiny_model();
  const std::vector<TokenId> p = {464, 2068, 7586};
  Generator gen(pm.model, pm.tok);
  GenerateSettings s;
  s.max_new_tokens = 12;
  s.sampling.temperature = 0.0f;
  s.sampling.top_k = 0;
  const auto plain = gen.generate(p, s);
  s.sampling.frequency_penalty = 2.0f;
  s.sampling.presence_penalty = 1.0f;
  s.sampling.logit_bias = {{plain[0].ids[0], -100.0f}};
  const auto want = gen.generate(p, s);
  EXPECT_NE(want[0].ids, plain[0].ids);
  EXPECT_NE(want[0].ids[0], plain[0].ids[0]);  // the biased-away first token is not taken
  Scheduler sched(pm.model, pm.tok, 2);
  EngineRequest r = request(p, 12);
  r.sampling = s.sampling;
  const JobOutput got = drain(*sched.submit(std::move(r)));
  ASSERT_EQ(got.ids.size(), 1u);
  EXPECT_EQ(got.ids[0], want[0].ids);
}

TEST(ServeScheduler, StopStringEndsTheChoice) {
  TinyModel pm = tiny_model();
  const std::vector<TokenId> p = {15496, 11, 995};
  Scheduler sched(pm.model, pm.tok, 2);
  const JobOutput full = drain(*sched.submit(request(p, 12)));
  ASSERT_GE(full.text[0].size(), 8u);
  const std::string stop = full.text[0].substr(full.text[0].size() / 2, 3);
  EngineRequest r = request(p, 12);
  r.stop = {stop};
  const JobOutput cut = drain(*sched.submit(r));
  EXPECT_EQ(cut.finish[0], "stop");
  EXPECT_EQ(cut.text[0], full.text[0].substr(0, full.text[0].find(stop)));
}

TEST(ServeScheduler, CancellationFreesTheSlot) {
  TinyModel pm = tiny_model();
  Scheduler sched(pm.model, pm.tok, 1);
  auto a = sched.submit(request({464}, 60));
  std::vector<Event> evs;
  while (evs.empty()) a->wait(evs, std::chrono::milliseconds(100));  // a is running
  auto b = sched.submit(request({40}, 4));                           // queued behind a's one slot
  a->cancel();
  const auto t0 = std::chrono::steady_clock::now();
  const JobOutput rb = drain(*b);
  EXPECT_EQ(rb.ids[0].size(), 4u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  while (a->wait(evs, std::chrono::milliseconds(100))) {
  }
  const SchedulerMetrics m = sched.metrics();
  EXPECT_EQ(m.requests_cancelled, 1u);
  EXPECT_EQ(m.slots_busy, 0);
  EXPECT_EQ(m.requests_active, 0);
  EXPECT_LT(m.generated_tokens, 60u + 4u);  // a did not run to its end
}

TEST(ServeScheduler, RefusesWhatCanNeverRun) {
  TinyModel pm = tiny_model();
  Scheduler sched(pm.model, pm.tok, 2);
  EXPECT_THROW(sched.submit(request({1}, 10, 0, 3)), Error);                     // 3 choices, 2 slots
  EXPECT_THROW(sched.submit(request(std::vector<TokenId>(60, 1), 10)), Error);   // beyond the context
  EXPECT_THROW(sched.submit(request({50257}, 4)), Error);                        // outside the vocabulary
  EXPECT_EQ(drain(*sched.submit(request({1}, 63))).ids[0].size() <= 63u, true);  // exactly fits
}

// `echo` with logprobs: each choice starts with its prompt, every token but the first scored given
// the ones before it, through passes of bounded memory (a prompt longer than one pass here), equal
// to one whole-prompt forward's log-softmax in double; n choices each get the echo; with
// max_tokens 0 nothing is generated, and the generated tokens after an echo are the plain ones.
TEST(ServeScheduler, EchoScoresThePromptLikeOneForward) {
  TinyModel pm = tiny_model(gpt2_tokenizer(), 32, nullptr, 200);
  std::mt19937 g(5);
  std::vector<TokenId> prompt(150);
  for (auto& t : prompt) t = static_cast<TokenId>(g() % 50000);
  prompt[0] = 464;
  // The reference: all positions' logits from one prefill, log-softmax in double.
  const int V = 50257;
  std::vector<float> all(prompt.size() * V);
  {
    Decoder ref(pm.model, 1);
    ref.prefill(0, prompt, all.data());
  }
  auto ref_logprob = [&](size_t pos, TokenId id) {
    const float* lg = all.data() + (pos - 1) * V;
    double mx = lg[0], sum = 0;
    for (int v = 0; v < V; v++) mx = std::max(mx, static_cast<double>(lg[v]));
    for (int v = 0; v < V; v++) sum += std::exp(static_cast<double>(lg[v]) - mx);
    return static_cast<double>(lg[id]) - mx - std::log(sum);
  };
  Scheduler sched(pm.model, pm.tok, 2);
  EngineRequest r = request(prompt, 0, 0, 2);
  r.echo = true;
  r.logprobs = 3;
  const std::vector<Choice> out = collect(*sched.submit(r));
  ASSERT_EQ(out.size(), 2u);
  for (const Choice& c : out) {
    ASSERT_EQ(c.tokens.size(), prompt.size());
    EXPECT_EQ(c.finish_reason, "length");
    EXPECT_EQ(c.text, sanitize_utf8(pm.tok->decode(prompt)));
    EXPECT_FALSE(c.tokens[0].scored);
    double worst = 0;
    for (size_t i = 1; i < prompt.size(); i++) {
      const ChoiceToken& t = c.tokens[i];
      EXPECT_TRUE(t.echoed && t.scored);
      EXPECT_EQ(t.id, prompt[i]);
      worst = std::max(worst, std::fabs(t.logprob - ref_logprob(i, t.id)));
      ASSERT_EQ(t.top.size(), 3u);
      for (const auto& [id, lp] : t.top) {
        worst = std::max(worst, std::fabs(lp - ref_logprob(i, id)));
        EXPECT_GE(lp + 1e-6, t.top.back().second);
      }
      // The most probable alternative is the argmax of the reference logits.
      const float* lg = all.data() + (i - 1) * V;
      EXPECT_EQ(t.top[0].first, static_cast<TokenId>(std::max_element(lg, lg + V) - lg));
    }
    EXPECT_LT(worst, 1e-4);
  }
  EXPECT_EQ(out[0].text, out[1].text);

  // max_tokens 0 without echo: an empty choice that ends at once.
  const std::vector<Choice> none = collect(*sched.submit(request(prompt, 0)));
  ASSERT_EQ(none.size(), 1u);
  EXPECT_TRUE(none[0].tokens.empty() && none[0].text.empty());
  EXPECT_EQ(none[0].finish_reason, "length");

  // echo then generation: the prompt, then the same tokens as without echo.
  const JobOutput plain = drain(*sched.submit(request({464, 2068, 7586}, 6)));
  EngineRequest e = request({464, 2068, 7586}, 6);
  e.echo = true;
  const std::vector<Choice> echoed = collect(*sched.submit(e));
  ASSERT_EQ(echoed[0].tokens.size(), 3u + 6u);
  std::vector<TokenId> ids;
  for (const auto& t : echoed[0].tokens) ids.push_back(t.id);
  EXPECT_EQ(std::vector<TokenId>(ids.begin() + 3, ids.end()), plain.ids[0]);
  EXPECT_TRUE(echoed[0].tokens[2].echoed && !echoed[0].tokens[3].echoed);
  EXPECT_EQ(echoed[0].text, pm.tok->decode(std::vector<TokenId>{464, 2068, 7586}) + plain.text[0]);
  const SchedulerMetrics m = sched.metrics();
  EXPECT_EQ(m.requests_active, 0);
  EXPECT_EQ(m.slots_busy, 0);
}

// A model with more rows than its vocabulary (a character vocabulary in a GPT-2-wide model) only
// ever emits tokens the vocabulary can decode.
TEST(ServeScheduler, SamplesOnlyTokensTheVocabularyHas) {
  auto chars = std::make_shared<CharTokenizer>(CharTokenizer::from_text("abcdefgh "));
  TinyModel pm = tiny_model(chars);
  Scheduler sched(pm.model, pm.tok, 2);
  EngineRequest r = request({0, 1, 2}, 30, 1.5f, 2, 9);
  r.logprobs = 3;
  const JobOutput out = drain(*sched.submit(r));
  for (const auto& ids : out.ids) {
    EXPECT_EQ(ids.size(), 30u);
    for (TokenId id : ids) EXPECT_LT(id, chars->vocab_size());
  }
  EXPECT_EQ(out.text[0].size(), 30u);  // one character per token
}

// ---- HTTP: the checks, and the server over raw sockets ----------------------------------------------

TEST(ServeHttp, ParseHost) {
  auto hp = parse_host("LocalHost:8080");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "localhost");
  EXPECT_EQ(hp->port, 8080);
  hp = parse_host("[::1]:80");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 80);
  hp = parse_host("127.0.0.1:");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->port, -1);
  for (const char* bad : {"", ":80", "a b", "a/b", "user@host", "::1", "[::1", "[]", "[::1]x", "h:65536",
                          "h:8o", "h:123456", "[x::1]", "h\r\n"})
    EXPECT_FALSE(parse_host(bad)) << bad;
}

TEST(ServeHttp, ParseOrigin) {
  auto o = parse_origin("http://127.0.0.1:8080");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->host, "127.0.0.1");
  EXPECT_EQ(o->port, 8080);
  EXPECT_EQ(parse_origin("https://Example.com")->port, 443);
  EXPECT_EQ(parse_origin("HTTP://localhost")->port, 80);
  for (const char* bad :
       {"null", "file://", "http://", "ftp://a", "http://a/b", "http://a:b", "localhost:80"})
    EXPECT_FALSE(parse_origin(bad)) << bad;
}

TEST(ServeHttp, LoopbackHosts) {
  for (const char* h : {"localhost", "LOCALHOST", "localhost.", "gpt.localhost", "127.0.0.1", "127.255.0.9",
                        "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(is_loopback_host(h)) << h;
  for (const char* h : {"evil.example", "localhost.evil.example", "127.0.0.1.evil.example", "128.0.0.1",
                        "0.0.0.0", "::", "::2", "::ffff:10.0.0.1", "10.0.0.1", "127.1", "notlocalhost", ""})
    EXPECT_FALSE(is_loopback_host(h)) << h;
  const std::vector<std::string> also = {"myhost.lan"};
  EXPECT_TRUE(loopback_host_allowed("localhost:8080", also));
  EXPECT_TRUE(loopback_host_allowed("[::1]:8080", also));
  EXPECT_TRUE(loopback_host_allowed("MyHost.lan:8080", also));  // the --host the server was given
  EXPECT_TRUE(loopback_host_allowed("[::1]", {"::1"}));
  EXPECT_FALSE(loopback_host_allowed("evil.example:8080", also));
  EXPECT_FALSE(loopback_host_allowed("", also));
  EXPECT_FALSE(loopback_host_allowed("localhost:8080/", also));
}

TEST(ServeHttp, SameOrigin) {
  EXPECT_TRUE(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
  EXPECT_TRUE(same_origin("http://localhost", "localhost"));
  EXPECT_TRUE(same_origin("http://localhost", "localhost:80"));
  EXPECT_TRUE(same_origin("https://gpt.example", "gpt.example"));  // behind a TLS proxy
  EXPECT_TRUE(same_origin("http://[::1]:8080", "[::1]:8080"));
  EXPECT_FALSE(same_origin("http://evil.example", "127.0.0.1:8080"));
  EXPECT_FALSE(same_origin("http://localhost:8080", "127.0.0.1:8080"));
  EXPECT_FALSE(same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
  EXPECT_FALSE(same_origin("null", "127.0.0.1:8080"));
  EXPECT_FALSE(same_origin("http://127.0.0.1:8080", ""));
}

TEST(ServeHttp, BearerMatches) {
  EXPECT_TRUE(bearer_matches("Bearer sk-1", "sk-1"));
  EXPECT_TRUE(bearer_matches("bearer sk-1", "sk-1"));
  EXPECT_FALSE(bearer_matches("Bearer sk-2", "sk-1"));
  EXPECT_FALSE(bearer_matches("Bearer sk-1x", "sk-1"));
  EXPECT_FALSE(bearer_matches("Bearer sk-", "sk-1"));
  EXPECT_FALSE(bearer_matches("Bearer ", "sk-1"));
  EXPECT_FALSE(bearer_matches("Basic sk-1", "sk-1"));
  EXPECT_FALSE(bearer_matches("", "sk-1"));
  EXPECT_FALSE(bearer_matches(std::string("Bearer sk-1\0", 12), "sk-1"));
}

// A raw connection to the server under test.
struct Client {
  int fd = -1;
  explicit Client(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  ~Client() { ::close(fd); }
  void send(const std::string& s) const {
    EXPECT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), ssize_t(s.size()));
  }
  // Everything until the server closes the connection (or 10 s pass).
  std::string read_all() const {
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
    return out;
  }
};

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
  return n;
}

TEST(ServeHttp, PipeliningFramingSlowClientsAndStop) {
  TinyModel pm = tiny_model();
  ServerOptions opt;
  opt.port = 0;
  opt.parallel = 2;
  opt.timeout = 1;
  Server server(pm.model, pm.tok, opt);
  const int port = server.bind();
  std::thread runner([&] { server.run(); });
  const std::string health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  {
    // Two requests in one write, the second asking to close: both answered, then closed.
    Client c(port);
    c.send(health + "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(count(c.read_all(), "HTTP/1.1 200 OK"), 2u);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
  }
  {
    // Conflicting lengths: 400, and the connection closes (nothing after it is read as a request).
    Client c(port);
    c.send("POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}" +
           health);
    const std::string r = c.read_all();
    EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
    EXPECT_EQ(count(r, "HTTP/1.1"), 1u) << r;
  }
  {
    // A slow client (a head that never ends) does not delay others and is closed after the timeout.
    Client slow(port);
    slow.send("GET /health HTTP/1.1\r\nX-Slow: a");
    Client c(port);
    c.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(c.read_all().rfind("HTTP/1.1 200", 0), 0u);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(slow.read_all(), "");  // closed, unanswered
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  }
  // A stop with a slow client connected returns at once.
  Client slow(port);
  slow.send("GET /health HTTP/1.1\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto t0 = std::chrono::steady_clock::now();
  server.stop();
  runner.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
}

TEST(ServeHttp, PortInUse) {
  TinyModel pm = tiny_model();
  ServerOptions opt;
  opt.port = 0;
  Server first(pm.model, pm.tok, opt);
  opt.port = first.bind();
  Server second(pm.model, pm.tok, opt);
  try {
    second.bind();
    ADD_FAILURE() << "bound a port in use";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already in use"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gpt::serve
