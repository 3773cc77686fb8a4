// Classification fine-tuning (finetune/classify.h): the head and the last-token gather against
// finite differences, the gradient through the model, padding invariance, a tiny task learnt to
// 100% through the fine-tuning loop, and bad input.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/rng.h"
#include "finetune/classify.h"
#include "finetune/loop.h"
#include "grad_check.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {
namespace {

using test::expect_gradient;
using test::randn;

// Mean cross-entropy of the head over hidden [B, T, C] at `last`.
double head_loss(const ClassifierHead& h, const std::vector<float>& hidden, const std::vector<int>& last,
                 int T, const std::vector<int>& labels) {
  std::vector<float> logits(labels.size() * h.K);
  h.forward(hidden.data(), last, T, logits.data());
  return softmax_cross_entropy(logits.data(), labels, h.K, nullptr);
}

TEST(ClassifierHead, GradientsOfHeadAndGatherMatchFiniteDifferences) {
  const int B = 3, T = 5, C = 6, K = 4;
  ClassifierHead h(C, K, 11);
  for (float& b : h.b) b = randn(1, 3)[0];
  std::vector<float> hidden = randn(static_cast<size_t>(B) * T * C, 5);
  const std::vector<int> last = {4, 0, 2}, labels = {1, 3, 0};
  std::vector<float> logits(B * K), dlogits(B * K), dhidden(hidden.size());
  h.forward(hidden.data(), last, T, logits.data());
  const float scale = 0.5f;  // grad_scale passes through
  softmax_cross_entropy(logits.data(), labels, K, dlogits.data(), scale);
  h.zero_grad();
  h.backward(hidden.data(), last, T, dlogits.data(), dhidden.data());
  auto f = [&] { return scale * head_loss(h, hidden, last, T, labels); };
  expect_gradient("dw", h.w.data(), h.w.size(), h.dw.data(), f, 1e-2f, 2e-2, 1000);
  expect_gradient("db", h.b.data(), h.b.size(), h.db.data(), f, 1e-2f, 2e-2, 1000);
  expect_gradient("dhidden", hidden.data(), hidden.size(), dhidden.data(), f, 1e-2f, 2e-2, 1000);
  // Only the last real positions get a gradient.
  for (int i = 0; i < B; i++)
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C && t != last[i]; c++)
        EXPECT_EQ(dhidden[(static_cast<size_t>(i) * T + t) * C + c], 0.0f);
}

ModelConfig tiny(int vocab) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.n_ctx = 16;
  c.vocab_size = vocab;
  return c;
}

TEST(ClassifyTask, GradientThroughTheModelMatchesFiniteDifferences) {
  GPT m(tiny(7));
  m.init_gpt2(3);
  ClassifySplit train;
  train.examples = {{{1, 2, 3, 4}, 0, 1}, {{5, 6}, 1, 2}, {{2, 2, 2, 2, 2, 2, 1}, 1, 3}};
  ClassifierInfo info;
  info.labels = {"a", "b"};
  ClassifyTask task(train, {}, {}, info, 8, 0, 8, 9);
  const std::vector<size_t> idx = {0, 1, 2};
  m.zero_grad();
  task.head().zero_grad();
  task.train_batch(m, idx, 1.0f, 0);
  std::vector<float> g(m.grads(), m.grads() + m.num_parameters());
  // The loss alone, as a function of the parameters.
  auto f = [&] {
    std::vector<float> probs;
    std::vector<ClassifyExample> ex = train.examples;
    classify_examples(m, task.head(), ex, 0, 8, &probs);
    double l = 0;
    for (size_t i = 0; i < ex.size(); i++) l -= std::log(probs[i * 2 + ex[i].label]);
    return l / static_cast<double>(ex.size());
  };
  for (const char* name : {"h.1.mlp.c_fc.weight", "h.0.attn.c_attn.weight", "ln_f.weight", "wte.weight"}) {
    const ParamInfo* p = m.find(name);
    ASSERT_NE(p, nullptr);
    expect_gradient(name, m.params() + p->offset, p->numel, g.data() + p->offset, f, 2e-3f, 5e-2, 48);
  }
}

TEST(ClassifyTask, PredictionDoesNotDependOnPaddingInTheBatch) {
  GPT m(tiny(7));
  m.init_gpt2(4);
  ClassifierHead h(8, 3, 2);
  const std::vector<ClassifyExample> alone = {{{3, 1, 4}, 0, 1}};
  const std::vector<ClassifyExample> batch = {
      {{1, 5, 6, 2, 6, 5, 3, 1, 2}, 0, 1}, {{3, 1, 4}, 0, 2}, {{2}, 0, 3}};
  std::vector<float> p1, p2;
  classify_examples(m, h, alone, 0, 8, &p1);
  classify_examples(m, h, batch, 6, 8, &p2);  // another pad id too
  for (int k = 0; k < 3; k++) EXPECT_NEAR(p1[k], p2[3 + k], 1e-6) << k;
}

TEST(ClassifyTask, LearnsATinyTaskTo100Percent) {
  // Label: whether the text contains 'z'. Character vocabulary, a 2-layer model from scratch.
  CharTokenizer tok({" ", "a", "b", "c", "z"});
  std::vector<Record> recs;
  uint64_t s = 7;
  for (int i = 0; i < 48; i++) {
    std::string t;
    const int len = 3 + static_cast<int>(splitmix64(s) % 6);
    for (int k = 0; k < len; k++) t += "abc "[splitmix64(s) % 4];
    const bool z = i % 2 == 0;
    if (z) t[splitmix64(s) % t.size()] = 'z';
    recs.push_back({{{"text", t}, {"label", z ? "yes" : "no"}}, static_cast<size_t>(i + 2)});
  }
  const ClassifyFields f;
  ClassifierInfo info;
  info.labels = collect_labels(recs, f, "t.csv");
  ASSERT_EQ(info.labels, (std::vector<std::string>{"no", "yes"}));
  const std::vector<Record> tr(recs.begin(), recs.begin() + 32), va(recs.begin() + 32, recs.end());
  GPT m(tiny(5));
  m.init_gpt2(1);
  ClassifyTask task(encode_split(tr, "tr", f, info.labels, tok, 16),
                    encode_split(va, "va", f, info.labels, tok, 16), {}, info, 8, 0, 16, 3);
  FinetuneConfig cfg;
  cfg.epochs = 60;
  cfg.batch_size = 8;
  cfg.schedule.lr = 1e-2f;
  cfg.schedule.min_lr = 1e-3f;
  cfg.adam.weight_decay = 0.0f;
  cfg.save = false;
  cfg.quiet = true;
  finetune(m, &tok, task, cfg);
  double acc = 0;
  const Confusion c = task.confusion(m, Split::Val, &acc);
  EXPECT_EQ(acc, 1.0) << format_confusion(c, info.labels);
  EXPECT_EQ(task.evaluate(m, Split::Train)["accuracy"].get<double>(), 1.0);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ClassifyData, PairsTruncationAndBadInput) {
  CharTokenizer tok({" ", "a", "b", "c"});
  const std::vector<std::string> labels = {"x", "y"};
  ClassifyFields f;
  std::vector<Record> recs = {{{{"text", "abcabc"}, {"label", "y"}}, 2}};
  ClassifySplit s = encode_split(recs, "f", f, labels, tok, 4);
  EXPECT_EQ(s.truncated, 1u);
  EXPECT_EQ(s.examples[0].ids, (std::vector<TokenId>{1, 2, 3, 1}));
  EXPECT_EQ(s.examples[0].label, 1);
  // unseen label, missing label, empty text: each names file and line
  recs = {{{{"text", "a"}, {"label", "z"}}, 7}};
  EXPECT_NE(error_of([&] { encode_split(recs, "f", f, labels, tok, 4); }).find("f:7: label \"z\" is not one"),
            std::string::npos);
  recs = {{{{"text", "a"}}, 8}};
  EXPECT_NE(error_of([&] { encode_split(recs, "f", f, labels, tok, 4); }).find("f:8: no field \"label\""),
            std::string::npos);
  EXPECT_EQ(error_of([&] { encode_split(recs, "f", f, labels, tok, 4, false); }), "");  // unlabeled input
  recs = {{{{"text", ""}, {"label", "x"}}, 9}};
  EXPECT_NE(error_of([&] { encode_split(recs, "f", f, labels, tok, 4); }).find("f:9: the text field"),
            std::string::npos);
  recs = {{{{"text", "a"}, {"label", "x"}}, 2}};
  EXPECT_NE(error_of([&] { collect_labels(recs, f, "f"); }).find("at least 2"), std::string::npos);
}

TEST(ClassifyData, PairsJoinWithEndOfTextAndShortenTheLongerText) {
  std::shared_ptr<const Tokenizer> tok = tokenizer_from_spec("gpt2");
  ClassifyFields f;
  f.text_b = "hyp";
  const std::vector<Record> recs = {{{{"text", " a a a a a a"}, {"hyp", " b b"}, {"label", "x"}}, 2}};
  const ClassifySplit s = encode_split(recs, "f", f, {"x", "y"}, *tok, 6);
  EXPECT_EQ(s.truncated, 1u);
  const std::vector<TokenId> a = tok->encode(" a"), b = tok->encode(" b");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(s.examples[0].ids, (std::vector<TokenId>{a[0], a[0], a[0], 50256, b[0], b[0]}));
}

}  // namespace
}  // namespace gpt
