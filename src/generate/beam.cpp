#include "generate/beam.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gpt {
namespace {

double normalised(double sum, size_t len, float length_penalty) {
  return sum / std::pow(static_cast<double>(len), static_cast<double>(length_penalty));
}

// The finished hypotheses: at most n, the best by score.
struct FinishedSet {
  size_t n;
  std::vector<BeamHypothesis> hyps;
  void add(BeamHypothesis h) {
    if (hyps.size() >= n && h.score <= worst()) return;
    hyps.push_back(std::move(h));
    std::stable_sort(hyps.begin(), hyps.end(),
                     [](const BeamHypothesis& a, const BeamHypothesis& b) { return a.score > b.score; });
    if (hyps.size() > n) hyps.pop_back();
  }
  double worst() const { return hyps.back().score; }
};

struct Candidate {
  double sum;
  int row;
  TokenId token;
};

}  // namespace

void BeamSettings::validate() const {
  if (beams < 1) fail("beam search needs at least 1 beam, got {}", beams);
  if (max_new_tokens < 1) fail("beam search needs max_new_tokens >= 1, got {}", max_new_tokens);
  if (num_return < 1 || num_return > beams)
    fail("beam search returns 1..{} hypotheses (the beam width), asked for {}", beams, num_return);
  if (!std::isfinite(length_penalty)) fail("length penalty must be finite");
}

std::vector<BeamHypothesis> beam_search(BeamModel& model, std::span<const TokenId> prompt,
                                        const BeamSettings& s) {
  s.validate();
  const int V = model.vocab();
  const size_t N = static_cast<size_t>(s.beams);
  std::vector<float> lp(N * static_cast<size_t>(V));
  model.start(prompt, s.beams, lp.data());

  std::vector<BeamHypothesis> live(1);  // one empty beam: the prompt
  FinishedSet finished{N, {}};
  std::vector<Candidate> cands;
  std::vector<TokenId> order(static_cast<size_t>(V));
  std::vector<int> parents;
  std::vector<TokenId> tokens;
  const size_t per_row = std::min<size_t>(2 * N, static_cast<size_t>(V));
  for (int step = 0; step < s.max_new_tokens; step++) {
    // The 2N best continuations over all live beams (ties: lower row, then lower id first).
    cands.clear();
    for (size_t b = 0; b < live.size(); b++) {
      const float* row = lp.data() + b * V;
      for (int t = 0; t < V; t++) order[t] = static_cast<TokenId>(t);
      std::nth_element(order.begin(), order.begin() + (per_row - 1), order.end(),
                       [&](TokenId x, TokenId y) { return row[x] > row[y] || (row[x] == row[y] && x < y); });
      for (size_t i = 0; i < per_row; i++)
        if (std::isfinite(row[order[i]]))
          cands.push_back({live[b].sum_logprob + row[order[i]], static_cast<int>(b), order[i]});
    }
    std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
      if (a.sum != b.sum) return a.sum > b.sum;
      if (a.row != b.row) return a.row < b.row;
      return a.token < b.token;
    });
    if (cands.size() > 2 * N) cands.resize(2 * N);

    std::vector<BeamHypothesis> next;
    parents.clear();
    tokens.clear();
    for (size_t rank = 0; rank < cands.size() && next.size() < N; rank++) {
      const Candidate& c = cands[rank];
      BeamHypothesis h = live[c.row];
      h.tokens.push_back(c.token);
      h.logprobs.push_back(static_cast<float>(c.sum - h.sum_logprob));
      h.sum_logprob = c.sum;
      h.score = normalised(h.sum_logprob, h.tokens.size(), s.length_penalty);
      const bool ends = (s.eot && c.token == *s.eot) || (s.stop && s.stop(h.tokens));
      if (ends) {
        // Like Hugging Face: only an ending among the N best continuations counts.
        if (rank < N) {
          h.finished = true;
          finished.add(std::move(h));
        }
        continue;
      }
      parents.push_back(c.row);
      tokens.push_back(c.token);
      next.push_back(std::move(h));
    }
    live = std::move(next);
    if (live.empty()) break;
    if (finished.hyps.size() >= N) {
      double best = live[0].sum_logprob;
      for (const auto& h : live) best = std::max(best, h.sum_logprob);
      if (finished.worst() >= normalised(best, live[0].tokens.size(), s.length_penalty)) break;
    }
    if (step + 1 == s.max_new_tokens) break;  // no logits needed after the last token
    model.step(parents, tokens, lp.data());
  }
  for (auto& h : live) finished.add(std::move(h));
  std::vector<BeamHypothesis> out = std::move(finished.hyps);
  if (out.size() > static_cast<size_t>(s.num_return)) out.resize(static_cast<size_t>(s.num_return));
  return out;
}

}  // namespace gpt
