// Choosing the next token from the model's logits: small pieces that each transform a logit row
// (filtered tokens become -inf), chained by Sampler in a fixed order. See docs/sampling.md.
//
//   logit bias -> repetition penalty -> frequency and presence penalties -> temperature -> top-k
//   -> top-p -> min-p -> draw   (or greedy: argmax, after the bias and the penalties)
//
// One total order ranks tokens everywhere: higher logit first, and among equal logits the lower
// id first. Greedy takes the first token of that order, top-k keeps exactly its first k, top-p its
// shortest prefix reaching p; so top-k 1 and greedy always agree, even on ties.
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// The settings, with Hugging Face's defaults for generate(do_sample=True): temperature 1,
// top_k 50, top_p 1 (off), min_p off, repetition_penalty 1 (off). greedy = do_sample=False.
struct SamplingSettings {
  bool greedy = false;
  float temperature = 1.0f;         // 0 = greedy
  int top_k = 50;                   // 0 = off
  float top_p = 1.0f;               // 1 = off; (0, 1]
  float min_p = 0.0f;               // 0 = off; [0, 1]
  float repetition_penalty = 1.0f;  // 1 = off; > 0
  // OpenAI's: logit -= frequency_penalty * (times the token was generated) + presence_penalty *
  // (generated at all), counted over the generated tokens only (not the prompt); each in [-2, 2].
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  // OpenAI's logit_bias: added to a token's logit before anything else; each in [-100, 100].
  std::vector<std::pair<TokenId, float>> logit_bias;
  uint64_t seed = 0;

  // True if the chain reduces to argmax (greedy, or temperature 0).
  bool is_greedy() const { return greedy || temperature == 0.0f; }
  // Throws gpt::Error naming the first invalid setting.
  void validate() const;
};

// The seed of sample k of a request seeded with `seed`: each sample its own random stream, the
// same whatever the number of samples (gpt generate --num-samples and the server's n agree).
inline uint64_t sample_seed(uint64_t seed, int k) {
  uint64_t x = seed + static_cast<uint64_t>(k);
  return splitmix64(x);
}

// Top-p compares cumulative probabilities with p up to this slack, so a distribution written as
// round decimals (0.5, 0.3, 0.2) is not tipped past p by float rounding of its logits.
inline constexpr double kTopPSlack = 1e-6;

// ---- the pieces (each works in place on one row of logits, V = logits.size()) ---------------------

// CTRL / Hugging Face: for each distinct id in `context`, logit > 0 ? logit / r : logit * r.
// r > 1 discourages repeats. `scratch` avoids an allocation per call (may be null).
void apply_repetition_penalty(std::span<float> logits, std::span<const TokenId> context, float r,
                              std::vector<TokenId>* scratch = nullptr);
// OpenAI's logit_bias: logits[id] += bias (ids outside the row are ignored).
void apply_logit_bias(std::span<float> logits, std::span<const std::pair<TokenId, float>> bias);
// OpenAI's frequency and presence penalties over the generated tokens `generated`: for each distinct
// id generated c times, logit -= c * frequency + presence. `scratch` avoids an allocation.
void apply_frequency_presence(std::span<float> logits, std::span<const TokenId> generated, float frequency,
                              float presence, std::vector<TokenId>* scratch = nullptr);
// logits /= t (t > 0).
void apply_temperature(std::span<float> logits, float t);
// Keeps the k first tokens of the order above (k = 0 or k >= V: all); the rest become -inf.
void top_k_filter(std::span<float> logits, int k, std::vector<uint32_t>* scratch = nullptr);
// Keeps the shortest prefix of the order whose probability (softmax of these logits, in double)
// sums to p or more (within kTopPSlack); p >= 1 keeps everything. At least one token stays.
void top_p_filter(std::span<float> logits, float p, std::vector<uint32_t>* scratch = nullptr);
// Keeps the tokens with probability >= min_p * (the largest probability); min_p = 0 keeps all.
void min_p_filter(std::span<float> logits, float min_p);
// The first token of the order (the highest logit, the lowest id among equals).
TokenId greedy_pick(std::span<const float> logits);
// One draw from softmax(logits) by inverse CDF in double over ids in increasing order: the first
// id whose cumulative weight exceeds u * total, u = rng.uniform(). -inf logits are never drawn.
TokenId draw(std::span<const float> logits, Rng& rng);

// softmax(logits) into probs (same size), in double internally; -inf gives 0.
void softmax(std::span<const float> logits, std::span<float> probs);
// log_softmax(logits) into out (may alias logits).
void log_softmax(std::span<const float> logits, std::span<float> out);
// The n most probable tokens of softmax(logits) as (id, log-probability), most probable first
// (ties: lower id first). For --show-probs: called on the model's own logits.
std::vector<std::pair<TokenId, float>> top_logprobs(std::span<const float> logits, int n);
// log softmax(logits)[id], computed without writing a row.
float token_logprob(std::span<const float> logits, TokenId id);

// ---- the chain -------------------------------------------------------------------------------

// Applies the settings in order and picks a token. Owns its scratch space, so a step allocates
// nothing; one Sampler per sequence (each has its own random stream).
class Sampler {
 public:
  explicit Sampler(const SamplingSettings& s);
  const SamplingSettings& settings() const { return s_; }

  // The next token. `logits` is overwritten with the filtered, temperature-scaled logits.
  // `context` is the sequence so far (prompt + generated), for the repetition penalty; its tokens
  // from `generated_from` on are the generated ones, for the frequency and presence penalties.
  TokenId sample(std::span<float> logits, std::span<const TokenId> context, size_t generated_from = 0);
  // The distribution sample() draws from, as probabilities (greedy: one-hot). `logits` is
  // overwritten as in sample(). Consumes no randomness.
  void distribution(std::span<float> logits, std::span<const TokenId> context, std::span<float> probs,
                    size_t generated_from = 0);

  Rng& rng() { return rng_; }

 private:
  void transform(std::span<float> logits, std::span<const TokenId> context, size_t generated_from);
  SamplingSettings s_;
  Rng rng_;
  std::vector<uint32_t> order_;
  std::vector<TokenId> seen_;
};

}  // namespace gpt
