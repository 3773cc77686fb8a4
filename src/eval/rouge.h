// ROUGE-1, ROUGE-2 and ROUGE-L between generated texts and references, and exact match.
// See docs/task-eval.md.
//
// Tokens as the rouge-score package's default tokenizer makes them (no stemming): the text is
// lowercased (ASCII), every run of characters other than a-z and 0-9 is a separator, and the words
// left are the tokens. ROUGE-N counts the n-grams the two texts share (each clipped to its count in
// the other text); ROUGE-L uses the longest common subsequence of the two token lists. Precision
// divides by the hypothesis's count, recall by the reference's, F is their harmonic mean (0 when
// both are 0). Exact match compares the texts with whitespace runs collapsed to one space and the
// ends trimmed (case kept).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace gpt {

struct RougePRF {
  double precision = 0, recall = 0, f = 0;
};

struct RougeScores {
  RougePRF rouge1, rouge2, rougeL;
  double exact_match = 0;  // 1 or 0 for one pair; the mean over a corpus
};

std::vector<std::string> rouge_tokens(std::string_view text);
std::string normalize_whitespace(std::string_view text);

// One hypothesis against one reference.
RougeScores rouge_pair(std::string_view hypothesis, std::string_view reference);

// The mean of the per-pair scores (as rouge-score's aggregator reports its mid value). The lists
// must have the same, non-zero length.
RougeScores rouge_corpus(const std::vector<std::string>& hypotheses,
                         const std::vector<std::string>& references);

}  // namespace gpt
