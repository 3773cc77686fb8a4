#include "eval/diversity.h"

#include <unordered_set>

#include "eval/rouge.h"

namespace gpt {

namespace {

// The n-gram of t starting at i, its words joined by spaces (words never hold one).
std::string ngram(const std::vector<std::string>& t, size_t i, size_t n) {
  std::string g = t[i];
  for (size_t k = 1; k < n; k++) g += ' ' + t[i + k];
  return g;
}

double ratio(size_t a, size_t b) { return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }

}  // namespace

DiversityScores diversity(const std::vector<std::string>& outputs) {
  DiversityScores d;
  std::unordered_set<std::string> uni, bi;
  size_t repeats = 0;
  for (const std::string& text : outputs) {
    const std::vector<std::string> t = rouge_tokens(text);
    for (size_t i = 0; i < t.size(); i++) {
      uni.insert(t[i]);
      d.unigrams++;
      if (i + 2 <= t.size()) {
        bi.insert(ngram(t, i, 2));
        d.bigrams++;
      }
    }
    std::unordered_set<std::string> seen;
    for (size_t i = 0; i + kRepetitionOrder <= t.size(); i++) {
      d.repetition_ngrams++;
      if (!seen.insert(ngram(t, i, kRepetitionOrder)).second) repeats++;
    }
  }
  d.distinct1 = ratio(uni.size(), d.unigrams);
  d.distinct2 = ratio(bi.size(), d.bigrams);
  d.repetition = ratio(repeats, d.repetition_ngrams);
  return d;
}

}  // namespace gpt
