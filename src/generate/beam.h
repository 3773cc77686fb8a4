// Length-normalised beam search over an abstract model, so that a crafted model can test it and
// the KV-cache decoder can implement it (each step reorders the cache rows to follow the beams).
//
// Each hypothesis is scored as  sum of its tokens' log-probabilities / length^length_penalty
// (length = generated tokens, a final end-of-text token included), Hugging Face's definition with
// its default length_penalty 1.0. At each step the 2N best continuations of the N live beams (by
// summed log-probability) are ranked; a continuation among the first N of them that ends a
// hypothesis (end-of-text, or the stop predicate) joins the finished set (its N best are kept),
// and the first N that do not become the next beams. The search ends after max_new_tokens, when
// no beam is left, or, like Hugging Face's early_stopping=False, once N hypotheses have finished
// and the best live beam's score at its current length no longer beats the worst of them. The
// live beams then join the finished set and the best-scoring hypotheses are returned.
#pragma once
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gpt {

// What beam search needs from a model: log-probabilities of the next token for a set of rows.
struct BeamModel {
  virtual ~BeamModel() = default;
  virtual int vocab() const = 0;
  // Feeds the prompt; logprobs[V] is the distribution of the first generated token. `beams` is
  // the most rows later steps will use.
  virtual void start(std::span<const TokenId> prompt, int beams, float* logprobs) = 0;
  // The new row i is the old row parent_rows[i] followed by tokens[i] (rows are renumbered 0..n-1
  // in this order, n <= beams; after start() there is one row, 0). Writes logprobs[n, V].
  virtual void step(const std::vector<int>& parent_rows, const std::vector<TokenId>& tokens,
                    float* logprobs) = 0;
};

struct BeamSettings {
  int beams = 4;
  int max_new_tokens = 20;
  float length_penalty = 1.0f;
  int num_return = 1;          // hypotheses returned, best first (<= beams)
  std::optional<TokenId> eot;  // a hypothesis that emits it is finished
  // Optional: true if a hypothesis whose generated tokens are these is finished (stop strings).
  std::function<bool(std::span<const TokenId>)> stop;
  void validate() const;
};

struct BeamHypothesis {
  std::vector<TokenId> tokens;  // generated, the end-of-text token included if it ended so
  std::vector<float> logprobs;  // each token's log-probability
  double sum_logprob = 0;
  double score = 0;       // sum_logprob / tokens.size()^length_penalty
  bool finished = false;  // ended by end-of-text or the stop predicate (else: out of tokens)
};

std::vector<BeamHypothesis> beam_search(BeamModel& model, std::span<const TokenId> prompt,
                                        const BeamSettings& s);

}  // namespace gpt
