// Scores of generated texts: BLEU (eval/bleu.h) and diversity (eval/diversity.h) on small cases
// worked out by hand (the smoothing of orders without a match, the brevity penalty, empty texts,
// clipping, corpus sums), the 13a tokenization, the combined scores and their JSON
// (eval/text_metrics.h), and the generation tasks the templates make of records (finetune/template.h).
// tests/text_metrics_reference.py checks the same numbers against sacrebleu and rouge-score.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "eval/bleu.h"
#include "eval/diversity.h"
#include "eval/text_metrics.h"
#include "finetune/template.h"

namespace gpt {
namespace {

using Strings = std::vector<std::string>;

TEST(BleuTokens, Mteval13a) {
  // $ split off; a period or comma stays inside a number, not elsewhere; a dash after a digit splits.
  EXPECT_EQ(bleu_tokens("It costs $3.50, i.e. 3,000-4,000."),
            (Strings{"It", "costs", "$", "3.50", ",", "i", ".", "e", ".", "3,000", "-", "4,000", "."}));
  EXPECT_EQ(bleu_tokens("Don't (stop) [now]... {ok}"),
            (Strings{"Don't", "(", "stop", ")", "[", "now", "]", ".", ".", ".", "{", "ok", "}"}));
  EXPECT_EQ(bleu_tokens("x..y"), (Strings{"x", ".", ".", "y"}));
  EXPECT_EQ(bleu_tokens("1.5.2 ,a. b."), (Strings{"1.5.2", ",", "a", ".", "b", "."}));
  // Case is kept; entities decoded one after the other (&amp;lt; -> &lt; -> <).
  EXPECT_EQ(bleu_tokens("&amp;lt;x&gt; &quot;Hi&quot;"), (Strings{"<", "x", ">", "\"", "Hi", "\""}));
  // "-\n" joins, other newlines are spaces; trailing whitespace goes first, so a final "-\n" stays "-".
  EXPECT_EQ(bleu_tokens("state-\nof-the-art\nnow"), (Strings{"stateof-the-art", "now"}));
  EXPECT_EQ(bleu_tokens("state-\n"), (Strings{"state-"}));
  // Python's whitespace: U+00A0 and U+3000 separate, U+200B (zero width) does not.
  EXPECT_EQ(bleu_tokens("a\u00a0b\u3000c a\u200bb"), (Strings{"a", "b", "c", "a\u200bb"}));
  EXPECT_EQ(bleu_tokens("a<skipped>b"), (Strings{"ab"}));
  EXPECT_TRUE(bleu_tokens("").empty());
  EXPECT_TRUE(bleu_tokens(" \t\n").empty());
}

void expect_bleu(const BleuScore& s, double score, std::array<double, 4> p, double bp, const char* what) {
  EXPECT_NEAR(s.score, score, 1e-9) << what;
  for (int n = 0; n < 4; n++) EXPECT_NEAR(s.precisions[n], p[n], 1e-9) << what << " order " << n + 1;
  EXPECT_NEAR(s.brevity_penalty, bp, 1e-12) << what;
}

TEST(Bleu, PerfectAndBrevityPenalty) {
  expect_bleu(bleu_corpus({"the cat sat on the mat"}, {"the cat sat on the mat"}), 100, {100, 100, 100, 100},
              1, "identical");
  // 6 tokens against 7: every n-gram matches, BP = exp(1 - 7/6).
  const double bp = std::exp(1.0 - 7.0 / 6.0);
  const BleuScore s = bleu_corpus({"the cat sat on the mat"}, {"the cat sat on the mat today"});
  expect_bleu(s, 100 * bp, {100, 100, 100, 100}, bp, "short");
  EXPECT_EQ(s.hyp_len, 6u);
  EXPECT_EQ(s.ref_len, 7u);
  // Longer than the reference: no bonus, BP = 1.
  expect_bleu(bleu_corpus({"the cat sat on the mat today"}, {"the cat sat on the mat"}),
              std::pow(100.0 * 6 / 7 * 100.0 * 5 / 6 * 100.0 * 4 / 5 * 100.0 * 3 / 4, 0.25),
              {600.0 / 7, 500.0 / 6, 80, 75}, 1, "long");
}

TEST(Bleu, ExpSmoothingOfOrdersWithoutMatches) {
  // "a b c e" vs "a b c d": 3/4, 2/3, 1/2, and no 4-gram match: 1 / (2 * 1).
  expect_bleu(bleu_corpus({"a b c e"}, {"a b c d"}), std::pow(75.0 * 200 / 3 * 50 * 50, 0.25),
              {75, 200.0 / 3, 50, 50}, 1, "one order smoothed");
  // Two orders without a match: 1 / (2 * 3) then 1 / (4 * 2).
  expect_bleu(bleu_corpus({"a b x c y"}, {"a b c d e"}), std::pow(60.0 * 25 * (100.0 / 6) * 12.5, 0.25),
              {60, 25, 100.0 / 6, 12.5}, 1, "two orders smoothed");
  // Clipping: "the" counts once, as the reference has it once.
  expect_bleu(bleu_corpus({"the the the the"}, {"the cat"}), std::pow(25.0 * (100.0 / 6) * 12.5 * 12.5, 0.25),
              {25, 100.0 / 6, 12.5, 12.5}, 1, "clipped");
}

TEST(Bleu, EdgeCases) {
  // An empty hypothesis: no tokens, BP 0, score 0.
  BleuScore s = bleu_corpus({""}, {"a b"});
  expect_bleu(s, 0, {0, 0, 0, 0}, 0, "empty hypothesis");
  EXPECT_EQ(s.hyp_len, 0u);
  // No match of any order: 0, without smoothing.
  expect_bleu(bleu_corpus({"x y z w"}, {"a b c d"}), 0, {0, 0, 0, 0}, 1, "no match");
  // Fewer than 4 tokens in all: no 4-grams, that order stays 0 and so does the score.
  expect_bleu(bleu_corpus({"a b c"}, {"a b c"}), 0, {100, 100, 100, 0}, 1, "no 4-grams");
  // An empty reference: BP 1, nothing matches.
  expect_bleu(bleu_corpus({"a b"}, {""}), 0, {0, 0, 0, 0}, 1, "empty reference");
  EXPECT_THROW(bleu_corpus({"a"}, {"a", "b"}), Error);
  EXPECT_THROW(bleu_corpus({}, {}), Error);
}

TEST(Bleu, CorpusSumsCountsBeforeDividing) {
  // The 3-, 4-grams of the first pair carry the second pair, which alone would score 0.
  const BleuScore s = bleu_corpus({"a b c d", "x y"}, {"a b c d", "z w"});
  expect_bleu(s, std::pow(400.0 / 6 * 75 * 100 * 100, 0.25), {400.0 / 6, 75, 100, 100}, 1, "corpus");
  EXPECT_EQ(s.matches, (std::array<size_t, 4>{4, 3, 2, 1}));
  EXPECT_EQ(s.totals, (std::array<size_t, 4>{6, 4, 2, 1}));
  // The same through the counts alone.
  EXPECT_NEAR(bleu_from_counts({4, 3, 2, 1}, {6, 4, 2, 1}, 6, 6).score, s.score, 1e-12);
  // Punctuation counts as tokens: "Hello, world!" has 4.
  EXPECT_EQ(bleu_corpus({"Hello, world!"}, {"Hello world"}).hyp_len, 4u);
}

TEST(Diversity, DistinctAndRepetition) {
  DiversityScores d = diversity({"the cat sat", "the cat ran"});
  EXPECT_DOUBLE_EQ(d.distinct1, 4.0 / 6);  // the cat sat ran of 6 words
  EXPECT_DOUBLE_EQ(d.distinct2, 3.0 / 4);  // "the cat" twice
  EXPECT_EQ(d.repetition_ngrams, 0u);      // no output has 4 words
  EXPECT_DOUBLE_EQ(d.repetition, 0);
  // A loop: 4-grams abab, baba, abab: the third repeats the first.
  d = diversity({"a b a b a b"});
  EXPECT_DOUBLE_EQ(d.distinct1, 2.0 / 6);
  EXPECT_DOUBLE_EQ(d.distinct2, 2.0 / 5);
  EXPECT_EQ(d.repetition_ngrams, 3u);
  EXPECT_DOUBLE_EQ(d.repetition, 1.0 / 3);
  // Repetition counts within an output only: the same 4-gram in two outputs is no repeat.
  d = diversity({"one two three four", "one two three four"});
  EXPECT_DOUBLE_EQ(d.repetition, 0);
  EXPECT_DOUBLE_EQ(d.distinct1, 0.5);
  // Pooled: 1 repeat over 3 + 1 4-grams.
  d = diversity({"a b a b a b", "w x y z"});
  EXPECT_DOUBLE_EQ(d.repetition, 1.0 / 4);
  // Words as ROUGE's tokens: case and punctuation do not make a word new.
  d = diversity({"The cat.", "the CAT!"});
  EXPECT_DOUBLE_EQ(d.distinct1, 2.0 / 4);
  // Nothing to count: zeros, not NaN.
  d = diversity({"", "!!"});
  EXPECT_EQ(d.distinct1, 0);
  EXPECT_EQ(d.distinct2, 0);
  EXPECT_EQ(d.repetition, 0);
  d = diversity({});
  EXPECT_EQ(d.unigrams, 0u);
}

TEST(TextMetrics, AllScoresAndJson) {
  const TextScores t =
      score_texts({"the cat sat on the mat", "Hello world"}, {"the cat is on the mat", "Hello world"});
  EXPECT_EQ(t.pairs, 2u);
  EXPECT_DOUBLE_EQ(t.rouge.rouge1.f, 11.0 / 12);
  EXPECT_DOUBLE_EQ(t.rouge.exact_match, 0.5);
  EXPECT_NEAR(
      t.bleu.score,
      bleu_corpus({"the cat sat on the mat", "Hello world"}, {"the cat is on the mat", "Hello world"}).score,
      0);
  const nlohmann::ordered_json j = text_scores_json(t);
  EXPECT_EQ(j["pairs"], 2);
  EXPECT_DOUBLE_EQ(j["bleu"]["score"].get<double>(), t.bleu.score);
  EXPECT_EQ(j["bleu"]["precisions"].size(), 4u);
  EXPECT_DOUBLE_EQ(j["distinct2"].get<double>(), t.diversity.distinct2);
  EXPECT_TRUE(j.contains("repetition"));
  EXPECT_THROW(score_texts({"a"}, {}), Error);
}

Record rec(const char* json, size_t line = 3) { return Record{nlohmann::json::parse(json), line}; }

std::string prompt_text(const GenerationTask& t) {
  std::string s;
  for (const Segment& seg : t.prompt) s += seg.text;
  return s;
}

TEST(GenerationTask, EachTemplate) {
  GenerationTask t = record_generation_task(rec(R"({"instruction": "Add.", "input": "2 3", "output": "5"})"),
                                            TemplateKind::Auto, "d.jsonl");
  EXPECT_EQ(t.kind, TemplateKind::Alpaca);
  EXPECT_EQ(prompt_text(t), instruction_prompt("Add.", "2 3"));
  EXPECT_EQ(t.reference, "5");
  EXPECT_TRUE(t.stop.empty());

  t = record_generation_task(rec(R"({"text": "Long story.", "summary": "Short."})"), TemplateKind::Summarize,
                             "d.jsonl");
  EXPECT_EQ(prompt_text(t), "Long story.\nTL;DR: ");
  EXPECT_EQ(t.reference, "Short.");
  EXPECT_EQ(t.stop, Strings{"\n"});
  // Other field names.
  t = record_generation_task(rec(R"({"article": "Long story.", "highlights": "Short."})"),
                             TemplateKind::Summarize, "d.jsonl", "article", "highlights");
  EXPECT_EQ(prompt_text(t), "Long story.\nTL;DR: ");
  EXPECT_EQ(t.reference, "Short.");

  // Chat: the last reply is the reference, the conversation before it the prompt.
  const char* chat =
      R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                       {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]})";
  t = record_generation_task(rec(chat), TemplateKind::Auto, "d.jsonl");
  EXPECT_EQ(t.kind, TemplateKind::Chat);
  EXPECT_EQ(t.reference, "Goodbye.");
  EXPECT_EQ(prompt_text(t), chat_prompt({{"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}}));
  EXPECT_EQ(t.stop, Strings{"\n### "});
  t = record_generation_task(rec(R"({"messages": [{"role": "user", "content": "Hi"}], "gold": "Hey"})"),
                             TemplateKind::Chat, "d.jsonl", "text", "gold");
  EXPECT_EQ(t.reference, "Hey");
  EXPECT_EQ(prompt_text(t), chat_prompt({{"user", "Hi"}}));
}

void expect_task_error(const char* json, TemplateKind kind, const std::string& what,
                       const std::string& ref = "") {
  try {
    record_generation_task(rec(json), kind, "d.jsonl", "text", ref);
    ADD_FAILURE() << "no error for " << json;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(GenerationTask, BadRecords) {
  expect_task_error(R"({"instruction": "Add."})", TemplateKind::Alpaca, "d.jsonl:3: no field \"output\"");
  expect_task_error(R"({"input": "x", "output": "y"})", TemplateKind::Alpaca,
                    "d.jsonl:3: no field \"instruction\"");
  expect_task_error(R"({"text": "x"})", TemplateKind::Summarize, "no field \"summary\"");
  expect_task_error(R"({"text": "", "summary": "y"})", TemplateKind::Summarize, "field \"text\" is empty");
  expect_task_error(R"({"foo": 1})", TemplateKind::Auto, "cannot tell the template");
  expect_task_error(R"({"messages": [{"role": "user", "content": "Hi"}]})", TemplateKind::Chat,
                    "the last message must be the assistant's reply");
  expect_task_error(R"({"messages": [{"role": "assistant", "content": "Hi"}]})", TemplateKind::Chat,
                    "no user or system message");
  expect_task_error(R"({"messages": [{"role": "user", "content": "Hi"}]})", TemplateKind::Chat,
                    "no field \"gold\"", "gold");
  expect_task_error(R"({"messages": "Hi"})", TemplateKind::Chat, "\"messages\" must be a list");
}

}  // namespace
}  // namespace gpt
