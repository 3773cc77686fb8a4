#include "generate/embed.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace gpt {

PaddedBatch pad_right(std::span<const std::vector<TokenId>* const> rows, TokenId pad) {
  PaddedBatch p;
  p.B = static_cast<int>(rows.size());
  for (const auto* r : rows) {
    if (r->empty()) fail("pad_right: an empty sequence");
    p.T = std::max(p.T, static_cast<int>(r->size()));
  }
  p.ids.assign(static_cast<size_t>(p.B) * p.T, pad);
  for (int i = 0; i < p.B; i++) {
    std::copy(rows[i]->begin(), rows[i]->end(), p.ids.begin() + static_cast<std::ptrdiff_t>(i) * p.T);
    p.last.push_back(static_cast<int>(rows[i]->size()) - 1);
  }
  return p;
}

std::optional<Pooling> parse_pooling(std::string_view name) {
  if (name == "mean") return Pooling::Mean;
  if (name == "last") return Pooling::Last;
  return std::nullopt;
}

const char* pooling_name(Pooling p) { return p == Pooling::Mean ? "mean" : "last"; }

void check_embed_inputs(const ModelConfig& cfg, std::span<const std::vector<TokenId>> inputs) {
  for (size_t i = 0; i < inputs.size(); i++) {
    const auto& in = inputs[i];
    if (in.empty()) fail("input {} is empty: there is nothing to embed", i);
    if (in.size() > static_cast<size_t>(cfg.n_ctx))
      fail("input {} has {} tokens, more than the model's context of {}", i, in.size(), cfg.n_ctx);
    for (TokenId t : in)
      if (t >= static_cast<TokenId>(cfg.vocab_size))
        fail("input {}: token id {} is out of range for a vocabulary of {}", i, t, cfg.vocab_size);
  }
}

namespace {

// Pools row b of hidden [B, T, C] (its first n positions are real) into out [C].
void pool(const float* hidden, int b, int T, int C, int n, Pooling how, bool normalize, float* out) {
  const float* row = hidden + static_cast<size_t>(b) * T * C;
  if (how == Pooling::Last) {
    std::copy(row + static_cast<size_t>(n - 1) * C, row + static_cast<size_t>(n) * C, out);
  } else {
    std::vector<double> sum(C, 0.0);
    for (int t = 0; t < n; t++)
      for (int c = 0; c < C; c++) sum[c] += row[static_cast<size_t>(t) * C + c];
    for (int c = 0; c < C; c++) out[c] = static_cast<float>(sum[c] / n);
  }
  if (normalize) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += static_cast<double>(out[c]) * out[c];
    if (ss > 0) {
      const double inv = 1.0 / std::sqrt(ss);
      for (int c = 0; c < C; c++) out[c] = static_cast<float>(out[c] * inv);
    }
  }
}

}  // namespace

std::vector<float> embed(GPT& model, std::span<const std::vector<TokenId>> inputs, const EmbedOptions& opt) {
  const ModelConfig& cfg = model.config();
  check_embed_inputs(cfg, inputs);
  const int C = cfg.n_embd;
  std::vector<float> out(inputs.size() * static_cast<size_t>(C));
  // Longest first: each batch is padded to its first input's length. A batch takes the next inputs
  // while the padded batch fits batch_tokens and no input would be more than half padding.
  std::vector<size_t> order(inputs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return inputs[a].size() > inputs[b].size(); });
  const size_t budget = std::max<size_t>(opt.batch_tokens, 1);
  std::vector<const std::vector<TokenId>*> rows;
  for (size_t i0 = 0; i0 < order.size();) {
    const size_t T = inputs[order[i0]].size();
    size_t i1 = i0 + 1;
    while (i1 < order.size() && (i1 - i0 + 1) * T <= budget && inputs[order[i1]].size() * 2 >= T) i1++;
    rows.clear();
    for (size_t i = i0; i < i1; i++) rows.push_back(&inputs[order[i]]);
    // Any id in the vocabulary pads: no real position ever attends to a pad.
    const PaddedBatch pb = pad_right(rows, 0);
    model.forward_hidden(pb.ids.data(), pb.B, pb.T);
    const float* hidden = model.hidden();
    for (int b = 0; b < pb.B; b++)
      pool(hidden, b, pb.T, C, pb.last[b] + 1, opt.pooling, opt.normalize,
           out.data() + order[i0 + b] * static_cast<size_t>(C));
    i0 = i1;
  }
  return out;
}

}  // namespace gpt
