#include "generate/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace gpt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The ranking used by every piece: higher logit first, lower id first among equals.
struct Ranks {
  const float* l;
  bool operator()(uint32_t a, uint32_t b) const { return l[a] > l[b] || (l[a] == l[b] && a < b); }
};

// Ids of the tokens still in play (finite logits) into `ids`.
void live_ids(std::span<const float> logits, std::vector<uint32_t>& ids) {
  ids.clear();
  for (size_t i = 0; i < logits.size(); i++)
    if (logits[i] > kNegInf) ids.push_back(static_cast<uint32_t>(i));
}

double max_logit(std::span<const float> logits) {
  float m = kNegInf;
  for (float v : logits) m = v > m ? v : m;
  return m;
}

}  // namespace

void SamplingSettings::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    fail("temperature must be >= 0 (0 = greedy), got {}", temperature);
  if (top_k < 0) fail("top-k must be >= 0 (0 = off), got {}", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("top-p must be in (0, 1], got {}", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("min-p must be in [0, 1], got {}", min_p);
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    fail("repetition penalty must be > 0 (1 = off), got {}", repetition_penalty);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    fail("frequency penalty must be in [-2, 2] (0 = off), got {}", frequency_penalty);
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    fail("presence penalty must be in [-2, 2] (0 = off), got {}", presence_penalty);
  for (const auto& [id, b] : logit_bias)
    if (!(b >= -100.0f && b <= 100.0f)) fail("the logit bias of token {} must be in [-100, 100], got {}", id, b);
}

void apply_logit_bias(std::span<float> logits, std::span<const std::pair<TokenId, float>> bias) {
  for (const auto& [id, b] : bias)
    if (id < logits.size()) logits[id] += b;
}

void apply_frequency_presence(std::span<float> logits, std::span<const TokenId> generated, float frequency,
                              float presence, std::vector<TokenId>* scratch) {
  if ((frequency == 0.0f && presence == 0.0f) || generated.empty()) return;
  std::vector<TokenId> local;
  std::vector<TokenId>& ids = scratch ? *scratch : local;
  ids.assign(generated.begin(), generated.end());
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) j++;
    if (ids[i] < logits.size()) logits[ids[i]] -= static_cast<float>(j - i) * frequency + presence;
    i = j;
  }
}

void apply_repetition_penalty(std::span<float> logits, std::span<const TokenId> context, float r,
                              std::vector<TokenId>* scratch) {
  if (r == 1.0f || context.empty()) return;
  std::vector<TokenId> local;
  std::vector<TokenId>& ids = scratch ? *scratch : local;
  ids.assign(context.begin(), context.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());  // each id is penalised once
  for (TokenId id : ids) {
    if (id >= logits.size()) continue;
    float& l = logits[id];
    l = l > 0.0f ? l / r : l * r;
  }
}

void apply_temperature(std::span<float> logits, float t) {
  if (t == 1.0f) return;
  for (float& l : logits) l /= t;  // a division, as Hugging Face does (not a multiply by 1/t)
}

void top_k_filter(std::span<float> logits, int k, std::vector<uint32_t>* scratch) {
  if (k <= 0 || static_cast<size_t>(k) >= logits.size()) return;
  std::vector<uint32_t> local;
  std::vector<uint32_t>& ids = scratch ? *scratch : local;
  live_ids(logits, ids);
  if (ids.size() <= static_cast<size_t>(k)) return;
  std::nth_element(ids.begin(), ids.begin() + (k - 1), ids.end(), Ranks{logits.data()});
  // ids[0..k) now hold the k first tokens of the order; everything after them goes.
  for (size_t i = static_cast<size_t>(k); i < ids.size(); i++) logits[ids[i]] = kNegInf;
}

void top_p_filter(std::span<float> logits, float p, std::vector<uint32_t>* scratch) {
  if (p >= 1.0f) return;
  std::vector<uint32_t> local;
  std::vector<uint32_t>& ids = scratch ? *scratch : local;
  live_ids(logits, ids);
  if (ids.size() <= 1) return;
  const double m = max_logit(logits);
  double total = 0;
  for (uint32_t id : ids) total += std::exp(static_cast<double>(logits[id]) - m);
  const double target = (static_cast<double>(p) - kTopPSlack) * total;
  // Sort a growing prefix only: the kept set is usually small next to the vocabulary.
  size_t sorted = 0, keep = ids.size();
  double cum = 0;
  for (size_t want = std::min<size_t>(64, ids.size()); keep == ids.size();
       want = std::min(ids.size(), want * 4)) {
    std::partial_sort(ids.begin() + sorted, ids.begin() + want, ids.end(), Ranks{logits.data()});
    for (size_t i = sorted; i < want; i++) {
      cum += std::exp(static_cast<double>(logits[ids[i]]) - m);
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
    sorted = want;
    if (want == ids.size()) break;
  }
  for (size_t i = keep; i < ids.size(); i++) logits[ids[i]] = kNegInf;
}

void min_p_filter(std::span<float> logits, float min_p) {
  if (min_p <= 0.0f) return;
  const double m = max_logit(logits);
  // p_i / p_max = exp(l_i - l_max): no normalisation needed.
  for (float& l : logits)
    if (l > kNegInf && std::exp(static_cast<double>(l) - m) < static_cast<double>(min_p)) l = kNegInf;
}

TokenId greedy_pick(std::span<const float> logits) {
  if (logits.empty()) fail("greedy_pick: empty logits");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); i++)
    if (logits[i] > logits[best]) best = i;  // strict: the lowest id wins a tie
  return static_cast<TokenId>(best);
}

TokenId draw(std::span<const float> logits, Rng& rng) {
  const double m = max_logit(logits);
  if (!(m > kNegInf)) fail("sampling: every token has been filtered out");
  double total = 0;
  for (float l : logits)
    if (l > kNegInf) total += std::exp(static_cast<double>(l) - m);
  const double target = rng.uniform() * total;
  double cum = 0;
  size_t last = 0;
  for (size_t i = 0; i < logits.size(); i++) {
    if (!(logits[i] > kNegInf)) continue;
    cum += std::exp(static_cast<double>(logits[i]) - m);
    last = i;
    if (cum > target) return static_cast<TokenId>(i);
  }
  return static_cast<TokenId>(last);  // rounding left u * total at the very end
}

void softmax(std::span<const float> logits, std::span<float> probs) {
  const double m = max_logit(logits);
  double total = 0;
  for (float l : logits)
    if (l > kNegInf) total += std::exp(static_cast<double>(l) - m);
  for (size_t i = 0; i < logits.size(); i++)
    probs[i] =
        logits[i] > kNegInf ? static_cast<float>(std::exp(static_cast<double>(logits[i]) - m) / total) : 0.0f;
}

namespace {
double log_sum_exp(std::span<const float> logits) {
  const double m = max_logit(logits);
  double total = 0;
  for (float l : logits)
    if (l > kNegInf) total += std::exp(static_cast<double>(l) - m);
  return m + std::log(total);
}
}  // namespace

void log_softmax(std::span<const float> logits, std::span<float> out) {
  const double lse = log_sum_exp(logits);
  for (size_t i = 0; i < logits.size(); i++)
    out[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
}

float token_logprob(std::span<const float> logits, TokenId id) {
  return static_cast<float>(static_cast<double>(logits[id]) - log_sum_exp(logits));
}

std::vector<std::pair<TokenId, float>> top_logprobs(std::span<const float> logits, int n) {
  std::vector<std::pair<TokenId, float>> out;
  if (n <= 0 || logits.empty()) return out;
  const double lse = log_sum_exp(logits);
  // The k best in a heap whose top is the worst of them: k ids held, not one per vocabulary entry
  // (this runs for every scored position of a prompt, and every token with logprobs).
  const size_t k = std::min<size_t>(static_cast<size_t>(n), logits.size());
  const Ranks better{logits.data()};
  std::vector<uint32_t> ids;
  ids.reserve(k);
  for (uint32_t i = 0; i < logits.size(); i++) {
    if (ids.size() < k) {
      ids.push_back(i);
      std::push_heap(ids.begin(), ids.end(), better);
    } else if (better(i, ids.front())) {
      std::pop_heap(ids.begin(), ids.end(), better);
      ids.back() = i;
      std::push_heap(ids.begin(), ids.end(), better);
    }
  }
  std::sort_heap(ids.begin(), ids.end(), better);
  for (size_t i = 0; i < k; i++)
    out.emplace_back(ids[i], static_cast<float>(static_cast<double>(logits[ids[i]]) - lse));
  return out;
}

// ---- the chain -------------------------------------------------------------------------------

Sampler::Sampler(const SamplingSettings& s) : s_(s), rng_(s.seed) { s_.validate(); }

void Sampler::transform(std::span<float> logits, std::span<const TokenId> context, size_t generated_from) {
  apply_logit_bias(logits, s_.logit_bias);
  apply_repetition_penalty(logits, context, s_.repetition_penalty, &seen_);
  apply_frequency_presence(logits, context.subspan(std::min(generated_from, context.size())),
                           s_.frequency_penalty, s_.presence_penalty, &seen_);
  if (s_.is_greedy()) return;
  apply_temperature(logits, s_.temperature);
  top_k_filter(logits, s_.top_k, &order_);
  top_p_filter(logits, s_.top_p, &order_);
  min_p_filter(logits, s_.min_p);
}

TokenId Sampler::sample(std::span<float> logits, std::span<const TokenId> context, size_t generated_from) {
  transform(logits, context, generated_from);
  return s_.is_greedy() ? greedy_pick(logits) : draw(logits, rng_);
}

void Sampler::distribution(std::span<float> logits, std::span<const TokenId> context, std::span<float> probs,
                           size_t generated_from) {
  transform(logits, context, generated_from);
  if (s_.is_greedy()) {
    std::fill(probs.begin(), probs.end(), 0.0f);
    probs[greedy_pick(logits)] = 1.0f;
    return;
  }
  softmax(logits, probs);
}

}  // namespace gpt
