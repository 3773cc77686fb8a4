// How varied a set of generated texts is, without references: distinct-1, distinct-2 and a
// repetition rate. See docs/task-eval.md.
//
// Words are ROUGE's tokens (eval/rouge.h rouge_tokens: lowercase ASCII letters and digits, anything
// else separates). Over all outputs together:
//   distinct-n  = (different n-grams) / (n-grams), counting every output's n-grams (n = 1, 2);
//                 0 when there are none. 1 means no n-gram occurs twice anywhere.
//   repetition  = (4-grams that repeat an earlier 4-gram of the same output) / (4-grams), summed
//                 over the outputs before dividing ("seq-rep-4", pooled); 0 when no output has 4
//                 words. A model stuck in a loop ("the cat the cat the cat") scores near 1.
// Distinct-n rewards variety across outputs and within them; repetition looks inside each output
// only, so identical outputs for different prompts lower distinct-n but not repetition.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace gpt {

inline constexpr size_t kRepetitionOrder = 4;

struct DiversityScores {
  double distinct1 = 0, distinct2 = 0, repetition = 0;
  size_t unigrams = 0, bigrams = 0;  // n-grams counted for distinct-1 and distinct-2
  size_t repetition_ngrams = 0;      // 4-grams counted for the repetition rate
};

DiversityScores diversity(const std::vector<std::string>& outputs);

}  // namespace gpt
