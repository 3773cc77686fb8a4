#include "eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"

namespace gpt {

namespace {

// Where the windows start, each with the first target position it scores.
struct Window {
  size_t begin, first_scored;
};

// Checks the input and options and lays out the windows of T tokens (the rule in the header).
std::vector<Window> plan_windows(std::span<const TokenId> ids, const EvalOptions& opt, const ModelConfig& cfg,
                                 int* T_out) {
  if (ids.size() < 2) fail("eval: the input has {} token(s); at least 2 are needed to score one", ids.size());
  for (size_t i = 0; i < ids.size(); i++)
    if (ids[i] >= static_cast<TokenId>(cfg.vocab_size))
      fail("eval: token id {} (position {}) is out of range for a vocabulary of {}", ids[i], i,
           cfg.vocab_size);
  int T = opt.seq_len > 0 ? opt.seq_len : cfg.n_ctx;
  if (T > cfg.n_ctx) fail("eval: --seq-len {} is longer than the model's context of {}", T, cfg.n_ctx);
  const int S = opt.stride > 0 ? opt.stride : T;
  if (S > T) fail("eval: --stride {} is longer than the window of {} tokens", S, T);
  if (opt.batch_size < 1) fail("eval: --batch-size must be >= 1");
  const size_t last = ids.size() - 1;               // index of the last target
  T = static_cast<int>(std::min<size_t>(T, last));  // a short input is one short window
  std::vector<Window> windows;
  size_t scored_up_to = 0;  // targets 1..scored_up_to are done
  for (size_t b = 0; scored_up_to < last; b += S) {
    const size_t begin = std::min(b, last - T);
    windows.push_back({begin, scored_up_to + 1});
    scored_up_to = begin + T;
  }
  *T_out = T;
  return windows;
}

}  // namespace

EvalResult evaluate(GPT& model, std::span<const TokenId> ids, const EvalOptions& opt,
                    const std::function<void(size_t, size_t)>& progress) {
  int T = 0;
  const std::vector<Window> windows = plan_windows(ids, opt, model.config(), &T);

  EvalResult r;
  double total = 0;
  const int B = std::max(1, std::min<int>(opt.batch_size, static_cast<int>(windows.size())));
  std::vector<TokenId> x(static_cast<size_t>(B) * T);
  std::vector<int32_t> y(static_cast<size_t>(B) * T);
  for (size_t w0 = 0; w0 < windows.size(); w0 += B) {
    const int nb = static_cast<int>(std::min<size_t>(B, windows.size() - w0));
    for (int k = 0; k < nb; k++) {
      const Window& w = windows[w0 + k];
      for (int t = 0; t < T; t++) {
        const size_t target = w.begin + t + 1;
        x[static_cast<size_t>(k) * T + t] = ids[w.begin + t];
        y[static_cast<size_t>(k) * T + t] =
            target >= w.first_scored ? static_cast<int32_t>(ids[target]) : kIgnoreIndex;
      }
    }
    model.forward(x.data(), y.data(), nb, T);
    const float* losses = model.position_losses();
    for (size_t i = 0; i < static_cast<size_t>(nb) * T; i++)
      if (y[i] != kIgnoreIndex) {
        total += losses[i];
        r.tokens++;
      }
    if (progress) progress(std::min(w0 + nb, windows.size()), windows.size());
  }
  r.windows = windows.size();
  r.loss = total / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace gpt
