// Task evaluation: multiple-choice scoring (eval/choices.h) against log-softmax of the model's own
// logits and against a model whose preferences are set by hand; ROUGE (eval/rouge.h) on
// hand-computed examples; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "eval/choices.h"
#include "eval/rouge.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {
namespace {

ModelConfig tiny_config(int vocab, int n_ctx) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.n_ctx = n_ctx;
  c.vocab_size = vocab;
  return c;
}

// sum over the choice tokens of log p(token | everything before it), from full logits of one
// unbatched forward pass, in double.
double reference_score(GPT& m, const std::vector<TokenId>& ctx, const std::vector<TokenId>& choice) {
  std::vector<TokenId> q = ctx;
  q.insert(q.end(), choice.begin(), choice.end());
  const int T = static_cast<int>(q.size()) - 1, V = m.config().vocab_size;
  m.forward(q.data(), nullptr, 1, T);
  const float* lg = m.logits();
  double sum = 0;
  for (int t = static_cast<int>(ctx.size()) - 1; t < T; t++) {
    const float* row = lg + static_cast<size_t>(t) * V;
    double mx = row[0];
    for (int v = 1; v < V; v++) mx = std::max(mx, static_cast<double>(row[v]));
    double z = 0;
    for (int v = 0; v < V; v++) z += std::exp(row[v] - mx);
    sum += row[q[t + 1]] - mx - std::log(z);
  }
  return sum;
}

TEST(ChoiceScore, MatchesLogSoftmaxOfForwardLogits) {
  GPT m(tiny_config(11, 32));
  m.init_gpt2(7);
  const std::vector<TokenId> ctx = {1, 4, 2, 9, 3};
  const std::vector<std::vector<TokenId>> choices = {{5}, {6, 7, 8}, {10, 0}, {2, 2, 2, 2, 2}};
  const ChoiceScores s = score_choices(m, ctx, choices);
  ASSERT_EQ(s.sum.size(), choices.size());
  EXPECT_FALSE(s.truncated);
  int best = 0, best_norm = 0;
  for (size_t c = 0; c < choices.size(); c++) {
    const double ref = reference_score(m, ctx, choices[c]);
    EXPECT_NEAR(s.sum[c], ref, 1e-4) << "choice " << c;
    EXPECT_EQ(s.tokens[c], choices[c].size());
    EXPECT_NEAR(s.mean[c], ref / static_cast<double>(choices[c].size()), 1e-4);
    if (s.sum[c] > s.sum[best]) best = static_cast<int>(c);
    if (s.mean[c] > s.mean[best_norm]) best_norm = static_cast<int>(c);
  }
  EXPECT_EQ(s.pred, best);
  EXPECT_EQ(s.pred_norm, best_norm);
}

TEST(ChoiceScore, LongContextKeepsTheLastTokens) {
  GPT m(tiny_config(11, 16));
  m.init_gpt2(3);
  std::vector<TokenId> ctx;
  for (int i = 0; i < 30; i++) ctx.push_back(static_cast<TokenId>((i * 7) % 11));
  const std::vector<std::vector<TokenId>> choices = {{1, 2, 3}, {4}};
  const ChoiceScores s = score_choices(m, ctx, choices);
  EXPECT_TRUE(s.truncated);
  for (size_t c = 0; c < choices.size(); c++) {
    // The window is the last n_ctx + 1 tokens of context + choice.
    const size_t keep = 16 + 1 - choices[c].size();
    const std::vector<TokenId> tail(ctx.end() - static_cast<std::ptrdiff_t>(keep), ctx.end());
    EXPECT_NEAR(s.sum[c], reference_score(m, tail, choices[c]), 1e-4) << "choice " << c;
  }
}

// A model that ignores its input: every block is zero, the final LayerNorm's gain is 0 and its
// bias e_0, so every position's logits are column 0 of the (tied) embedding: log p(v) = s_v - lse(s).
struct UnigramModel {
  CharTokenizer tok{{" ", "a", "b", "c", "x", "y", "z"}};
  std::map<char, float> score = {{'x', 3.0f}, {'y', 2.5f}};
  GPT model{tiny_config(7, 64)};
  UnigramModel() {
    std::fill(model.params(), model.params() + model.num_parameters(), 0.0f);
    const ModelTensors& w = model.weights();
    w.lnf_b[0] = 1.0f;
    for (const auto& [ch, s] : score) w.wte[tok.encode(std::string(1, ch))[0] * 8] = s;
  }
  double logp(char ch) const {
    double z = 0;
    for (size_t v = 0; v < 7; v++) {
      const char c = tok.decode(std::vector<TokenId>{static_cast<TokenId>(v)})[0];
      z += std::exp(score.count(c) ? score.at(c) : 0.0);
    }
    return (score.count(ch) ? score.at(ch) : 0.0) - std::log(z);
  }
};

TEST(ChoiceEval, KnownAnswersFromAHandSetModel) {
  UnigramModel u;
  const std::string jsonl =
      // sum and mean both pick "x" (index 1)
      "{\"context\": \"ab\", \"choices\": [\"yy\", \"x\", \"zz\"], \"answer\": 1}\n"
      "\n"
      // sum picks "zx" (-4.29 > -4.58), mean picks "yyyy"; the answer is "yyyy"
      "{\"context\": \"ca\", \"choices\": [\"yyyy\", \"zx\"], \"answer\": \"yyyy\"}\n"
      // HellaSwag format: the endings get a leading space; " x" beats " c"
      "{\"ctx\": \"b\", \"endings\": [\"c\", \"x\"], \"label\": 0}\n";
  const std::vector<ChoiceExample> ex = parse_choice_jsonl(jsonl, "t.jsonl");
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[1].line, 3u);
  EXPECT_EQ(ex[1].label, 0);
  EXPECT_EQ(ex[2].choices[1], " x");
  const ChoiceEvalResult r = evaluate_choices(u.model, u.tok, ex, {});
  ASSERT_EQ(r.predictions.size(), 3u);
  EXPECT_EQ(r.predictions[0].scores.pred, 1);
  EXPECT_EQ(r.predictions[0].scores.pred_norm, 1);
  EXPECT_EQ(r.predictions[1].scores.pred, 1);
  EXPECT_EQ(r.predictions[1].scores.pred_norm, 0);
  EXPECT_EQ(r.predictions[2].scores.pred, 1);
  EXPECT_NEAR(r.predictions[0].scores.sum[0], 2 * u.logp('y'), 1e-5);
  EXPECT_NEAR(r.predictions[1].scores.sum[1], u.logp('z') + u.logp('x'), 1e-5);
  EXPECT_NEAR(r.predictions[1].scores.mean[0], u.logp('y'), 1e-5);
  EXPECT_NEAR(r.predictions[2].scores.sum[0], u.logp(' ') + u.logp('c'), 1e-5);
  EXPECT_EQ(r.examples, 3u);
  EXPECT_EQ(r.correct, 1u);       // example 0
  EXPECT_EQ(r.correct_norm, 2u);  // examples 0 and 1
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.accuracy_norm, 2.0 / 3);
  // Per character (lm-eval's acc_norm): a HellaSwag ending's added space is not counted; here one
  // token is one character elsewhere, so per_char equals mean there.
  EXPECT_EQ(ex[2].chars, (std::vector<size_t>{1, 1}));
  EXPECT_NEAR(r.predictions[2].scores.per_char[0], u.logp(' ') + u.logp('c'), 1e-5);
  EXPECT_NEAR(r.predictions[1].scores.per_char[0], r.predictions[1].scores.mean[0], 1e-9);
  EXPECT_EQ(r.correct_char, 2u);
  EXPECT_DOUBLE_EQ(r.accuracy_char, 2.0 / 3);
  // Characters, not bytes: "\u00e9t\u00e9" is 3 characters in 5 bytes.
  const auto accented = parse_choice_jsonl("{\"ctx\": \"a\", \"endings\": [\"\u00e9t\u00e9\", \"x\"], \"label\": 0}", "u");
  EXPECT_EQ(accented[0].chars, (std::vector<size_t>{3, 1}));
}

TEST(ChoiceEval, FewShotPrefixIsSeededAndNeverTheExampleItself) {
  const std::vector<ChoiceExample> pool = parse_choice_jsonl(
      "{\"context\": \"Q1\", \"choices\": [\" a\", \" b\"], \"answer\": 0}\n"
      "{\"context\": \"Q2\", \"choices\": [\" a\", \" b\"], \"answer\": 1}\n"
      "{\"context\": \"Q3\", \"choices\": [\" a\", \" b\"], \"answer\": 0}\n",
      "pool");
  ChoiceEvalOptions opt;
  opt.shots = 2;
  opt.shots_pool = pool;
  for (size_t i = 0; i < pool.size(); i++) {
    const std::string p = few_shot_prefix(opt, pool[i], i);
    EXPECT_EQ(p, few_shot_prefix(opt, pool[i], i));  // deterministic
    EXPECT_EQ(p.find(pool[i].context), std::string::npos) << p;
    // the two others, solved, each followed by a blank line
    for (size_t k = 0; k < pool.size(); k++) {
      if (k == i) continue;
      EXPECT_NE(p.find(pool[k].context + pool[k].choices[pool[k].label] + "\n\n"), std::string::npos);
    }
  }
  opt.shots = 3;
  EXPECT_THROW(few_shot_prefix(opt, pool[0], 0), Error);
}

std::string parse_error(const std::string& text, bool skip = false) {
  try {
    parse_choice_jsonl(text, "f.jsonl", skip);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ChoiceEval, BadLinesNameTheirLine) {
  const std::string good = "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json\n", "line 2: invalid JSON"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"]}\n", "line 2: missing field \"answer\""},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n",
       "line 2: \"answer\" 2 is out of range"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": \"d\"}\n", "none of the choices"},
      {"{\"context\": \"\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n", "line 2: the context is empty"},
      {"{\"context\": \"c\", \"choices\": [\"a\"], \"answer\": 0}\n", "at least 2"},
      {"{\"ctx\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": -1}\n", "\"label\" -1 is out of range"},
      {"{\"ctx\": \"c\", \"endings\": [\"a\", 3], \"label\": 0}\n", "not a string"},
      {"{\"question\": \"c\"}\n", "neither HellaSwag"},
      {"[1, 2]\n", "not a JSON object"},
  };
  for (const auto& [bad, want] : cases) {
    const std::string msg = parse_error(good + bad + good);
    EXPECT_NE(msg.find("f.jsonl line 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "want '" << want << "' in: " << msg;
    // skipped instead, the two good lines remain
    size_t skipped = 0;
    EXPECT_EQ(parse_choice_jsonl(good + bad + good, "f.jsonl", true, &skipped).size(), 2u);
    EXPECT_EQ(skipped, 1u);
  }
  EXPECT_NE(parse_error("\n\n").find("no examples"), std::string::npos);
  EXPECT_NE(parse_error("{bad\n", true).find("1 malformed line(s) skipped"), std::string::npos);
  // HellaSwag's raw files: ctx_a + " " + ctx_b, string labels
  const auto raw = parse_choice_jsonl(
      "{\"ctx_a\": \"A man\", \"ctx_b\": \"then\", \"endings\": [\"u\", \"v\"], \"label\": \"1\"}", "r");
  EXPECT_EQ(raw[0].context, "A man then");
  EXPECT_EQ(raw[0].label, 1);
}

void expect_prf(const RougePRF& s, double p, double r, const char* what) {
  EXPECT_NEAR(s.precision, p, 1e-12) << what;
  EXPECT_NEAR(s.recall, r, 1e-12) << what;
  EXPECT_NEAR(s.f, p + r > 0 ? 2 * p * r / (p + r) : 0.0, 1e-12) << what;
}

TEST(Rouge, HandComputedPairs) {
  EXPECT_EQ(rouge_tokens("The CAT's 2 hats, e.g.!"),
            (std::vector<std::string>{"the", "cat", "s", "2", "hats", "e", "g"}));
  // 5 shared unigrams of 6; bigrams "the cat", "on the", "the mat": 3 of 5; LCS "the cat on the mat": 5
  RougeScores s = rouge_pair("the cat sat on the mat", "the cat is on the mat");
  expect_prf(s.rouge1, 5.0 / 6, 5.0 / 6, "rouge1");
  expect_prf(s.rouge2, 3.0 / 5, 3.0 / 5, "rouge2");
  expect_prf(s.rougeL, 5.0 / 6, 5.0 / 6, "rougeL");
  EXPECT_EQ(s.exact_match, 0.0);
  // tokens [a b c] vs [a b c d]
  s = rouge_pair("A b, C!", "a b c d");
  expect_prf(s.rouge1, 1.0, 3.0 / 4, "rouge1");
  expect_prf(s.rouge2, 1.0, 2.0 / 3, "rouge2");
  expect_prf(s.rougeL, 1.0, 3.0 / 4, "rougeL");
  // clipped counts: "the the the" against "the cat": 1 of 3 unigrams; LCS 1
  s = rouge_pair("the the the", "the cat");
  expect_prf(s.rouge1, 1.0 / 3, 1.0 / 2, "rouge1 clipped");
  expect_prf(s.rouge2, 0, 0, "rouge2 clipped");
  // LCS differs from bigram overlap: "a x b y c" vs "a b c": LCS 3
  s = rouge_pair("a x b y c", "a b c");
  expect_prf(s.rougeL, 3.0 / 5, 1.0, "rougeL gaps");
  s = rouge_pair("", "a b");
  expect_prf(s.rouge1, 0, 0, "empty");
  EXPECT_EQ(rouge_pair("  hello \t world\n", "hello world").exact_match, 1.0);
  EXPECT_EQ(rouge_pair("Hello world", "hello world").exact_match, 0.0);
}

TEST(Rouge, CorpusIsTheMeanOfPairs) {
  const RougeScores s = rouge_corpus({"a b", "x"}, {"a b", "y"});
  expect_prf(s.rouge1, 0.5, 0.5, "rouge1");
  EXPECT_EQ(s.exact_match, 0.5);
  EXPECT_THROW(rouge_corpus({"a"}, {"a", "b"}), Error);
  EXPECT_THROW(rouge_corpus({}, {}), Error);
}

}  // namespace
}  // namespace gpt
