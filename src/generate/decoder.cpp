#include "generate/decoder.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace gpt {

Decoder::Decoder(GPT& model, int max_batch, int chunk, std::optional<KvType> kv)
    : model_(model),
      cfg_(model.config()),
      max_batch_(max_batch),
      V_(cfg_.vocab_size),
      cache_(model.backend(), cfg_, std::max(max_batch, 1),
             kv.value_or(model.backend().kv_cache_type(model.weight_type()))) {
  // The decoder reads the base weights: attached adapters would silently be lost.
  if (model.lora()) fail("the model has LoRA adapters attached: merge them first (merge_lora, gpt lora merge)");
  if (max_batch < 1) fail("decoder: max_batch must be >= 1, got {}", max_batch);
  chunk_ = chunk > 0 ? std::min(chunk, cfg_.n_ctx) : std::min(cfg_.n_ctx, 512);
  const int rows = std::max(chunk_, max_batch);
  ws_ = model.make_workspace(rows);
  const size_t T = cfg_.n_ctx, B = max_batch;
  tokens_.assign(B * T, 0);
  len_.assign(B, 0);
  phys_.resize(B);
  for (size_t r = 0; r < B; r++) phys_[r] = static_cast<int>(r);
  logits_.assign(2 * B * V_, 0.0f);
  s_rows_.resize(rows);
  s_pos_.resize(rows);
  s_ids_.resize(rows);
  s_old_.resize(B);
  s_new_.resize(B);
  s_used_.resize(B);
}

size_t Decoder::activation_bytes() const { return GPT::workspace_bytes(*ws_) + logits_.size() * sizeof(float); }

const float* Decoder::logits(int row) const { return logits_.data() + static_cast<size_t>(row) * V_; }
float* Decoder::logits(int row) { return logits_.data() + static_cast<size_t>(row) * V_; }

std::span<const TokenId> Decoder::window(int row) const {
  const int p = phys_[row];
  return {tokens_.data() + static_cast<size_t>(p) * cfg_.n_ctx, static_cast<size_t>(len_[p])};
}

void Decoder::reset(int row) { len_[phys_[row]] = 0; }

// ---- prefill and step -----------------------------------------------------------------------------

void Decoder::run_prefill(int prow, std::span<const TokenId> tokens, float* last_logits, float* all_logits,
                          const PositionLogits* sink) {
  const int T = static_cast<int>(tokens.size());
  TokenId* row_tokens = tokens_.data() + static_cast<size_t>(prow) * cfg_.n_ctx;
  // memmove: in a rebuild, tokens is the row's own window shifted by one.
  std::memmove(row_tokens, tokens.data(), tokens.size() * sizeof(TokenId));
  len_[prow] = 0;
  const int pass = sink ? std::min(chunk_, sink->rows) : chunk_;
  for (int t0 = 0; t0 < T; t0 += pass) {
    const int n = std::min(pass, T - t0);
    for (int i = 0; i < n; i++) {
      s_rows_[i] = prow;
      s_pos_[i] = t0 + i;
    }
    // The wanted positions: all of the pass, the very last token, or none.
    int want0 = n;
    float* out = nullptr;
    if (all_logits) {
      want0 = 0;
      out = all_logits + static_cast<size_t>(t0) * V_;
    } else if (sink) {
      want0 = 0;
      out = sink->buf;
    } else if (last_logits && t0 + n == T) {
      want0 = n - 1;
      out = last_logits;
    }
    model_.forward_cached(*ws_, cache_, n, row_tokens + t0, s_rows_.data(), s_pos_.data(), want0, out,
                          observer_);
    len_[prow] = t0 + n;
    if (sink) {
      sink->each(t0, n, out);
      if (last_logits && t0 + n == T)
        std::memcpy(last_logits, out + static_cast<size_t>(n - 1) * V_, V_ * sizeof(float));
    }
  }
  if (all_logits && last_logits)
    std::memcpy(last_logits, all_logits + static_cast<size_t>(T - 1) * V_, V_ * sizeof(float));
}

void Decoder::prefill(int row, std::span<const TokenId> tokens, float* all_logits) {
  if (row < 0 || row >= max_batch_) fail("decoder: row {} is out of range (max batch {})", row, max_batch_);
  if (tokens.empty()) fail("decoder: a prefill needs at least one token");
  if (tokens.size() > static_cast<size_t>(cfg_.n_ctx)) tokens = tokens.subspan(tokens.size() - cfg_.n_ctx);
  for (TokenId t : tokens)
    if (t >= static_cast<TokenId>(V_)) fail("token id {} is out of range for a vocabulary of {}", t, V_);
  if (cap_.layer >= 0) {
    cap_.cap.T = static_cast<int>(tokens.size());
    std::fill(cap_.cap.out, cap_.cap.out + static_cast<size_t>(cap_.cap.T) * cap_.cap.T, 0.0f);
  }
  // Armed for one prefill only (a step or a rebuild never observes).
  auto disarm = [&] {
    cap_.layer = -1;
    observer_ = nullptr;
    sink_ = nullptr;
  };
  try {
    run_prefill(phys_[row], tokens, logits(row), all_logits, sink_);
  } catch (...) {
    disarm();
    throw;
  }
  disarm();
}

void Decoder::prefill(int row, std::span<const TokenId> tokens, const PositionLogits& sink) {
  if (!sink.buf || sink.rows < 1 || !sink.each) fail("decoder: a position-logits sink needs a buffer, rows and a reader");
  sink_ = &sink;
  prefill(row, tokens, nullptr);
}

void Decoder::capture_attention(int layer, int head, float* out) {
  if (layer < 0 || layer >= cfg_.n_layer)
    fail("decoder: layer {} is out of range (0..{})", layer, cfg_.n_layer - 1);
  if (head < 0 || head >= cfg_.n_head) fail("decoder: head {} is out of range (0..{})", head, cfg_.n_head - 1);
  if (!out) fail("decoder: capture_attention needs an output buffer");
  cap_.layer = layer;
  cap_.cap = {head, out, 0};
  observer_ = &cap_;
}

void Decoder::observe(ForwardObserver* observer) {
  cap_.layer = -1;
  observer_ = observer;
}

void Decoder::step(std::span<const int> rows, std::span<const TokenId> tokens) {
  // One token per row, at most max_batch distinct rows, each in range and prefilled.
  const int n = static_cast<int>(rows.size());
  if (tokens.size() != rows.size()) fail("decoder: step() needs one token per row");
  if (n == 0) return;
  if (n > max_batch_) fail("decoder: {} rows in a step, max batch {}", n, max_batch_);
  std::fill(s_used_.begin(), s_used_.end(), 0);
  for (int i = 0; i < n; i++) {
    const int r = rows[i];
    if (r < 0 || r >= max_batch_) fail("decoder: row {} is out of range (max batch {})", r, max_batch_);
    if (len_[phys_[r]] == 0) fail("decoder: row {} has not been prefilled", r);
    if (tokens[i] >= static_cast<TokenId>(V_))
      fail("token id {} is out of range for a vocabulary of {}", tokens[i], V_);
    if (s_used_[r]) fail("decoder: row {} appears twice in one step", r);
    s_used_[r] = 1;
  }
  // Full rows slide first: rebuilt from their last n_ctx - 1 tokens (their own window, shifted).
  for (int r : rows) {
    const int p = phys_[r];
    if (len_[p] == cfg_.n_ctx) {
      const TokenId* w = tokens_.data() + static_cast<size_t>(p) * cfg_.n_ctx;
      run_prefill(p, std::span<const TokenId>(w + 1, cfg_.n_ctx - 1), nullptr, nullptr);
      rebuilds_++;
    }
  }
  for (int i = 0; i < n; i++) {
    const int p = phys_[rows[i]];
    s_rows_[i] = p;
    s_pos_[i] = len_[p];
    s_ids_[i] = tokens[i];
  }
  float* out = logits_.data() + static_cast<size_t>(max_batch_) * V_;  // the head's output area
  model_.forward_cached(*ws_, cache_, n, s_ids_.data(), s_rows_.data(), s_pos_.data(), 0, out);
  for (int i = 0; i < n; i++) {
    const int p = s_rows_[i];
    tokens_[static_cast<size_t>(p) * cfg_.n_ctx + len_[p]] = tokens[i];
    len_[p]++;
    std::memcpy(logits(rows[i]), out + static_cast<size_t>(i) * V_, V_ * sizeof(float));
  }
}

// ---- rows ------------------------------------------------------------------------------------------

void Decoder::copy_phys(int dst, int src) {
  if (dst == src) return;
  const size_t len = len_[src], T = cfg_.n_ctx;
  cache_.copy_row(dst, src, static_cast<int>(len));
  std::memcpy(tokens_.data() + dst * T, tokens_.data() + src * T, len * sizeof(TokenId));
  len_[dst] = len_[src];
}

void Decoder::copy_row(int dst, int src) {
  if (dst < 0 || src < 0 || dst >= max_batch_ || src >= max_batch_)
    fail("decoder: copy_row({}, {}) is out of range (max batch {})", dst, src, max_batch_);
  if (dst == src) return;
  copy_phys(phys_[dst], phys_[src]);
  std::memcpy(logits(dst), logits(src), V_ * sizeof(float));
}

// New logical row i = old logical row parents[i]: rows move by relabelling the map from logical to
// physical rows, and a cache is copied only where a parent has more than one child.
void Decoder::reorder(std::span<const int> parents) {
  const int rows = max_batch_, n = static_cast<int>(parents.size());
  if (n > rows) fail("decoder: reorder to {} rows, max batch {}", n, rows);
  for (int p : parents)
    if (p < 0 || p >= rows) fail("decoder: reorder parent {} is out of range", p);
  // The first child of a physical row takes it over; further children get a copy in a row that
  // no child uses.
  std::copy(phys_.begin(), phys_.end(), s_old_.begin());
  std::fill(s_used_.begin(), s_used_.end(), 0);
  for (int i = 0; i < n; i++) {
    const int p = s_old_[parents[i]];
    s_new_[i] = s_used_[p] ? -1 : p;
    s_used_[p] = 1;
  }
  int next_free = 0;
  auto take_free = [&] {
    while (s_used_[next_free]) next_free++;
    s_used_[next_free] = 1;
    return next_free;
  };
  for (int i = 0; i < n; i++)
    if (s_new_[i] < 0) {
      const int f = take_free();
      copy_phys(f, s_old_[parents[i]]);
      s_new_[i] = f;
    }
  for (int i = n; i < rows; i++) {
    s_new_[i] = take_free();
    len_[s_new_[i]] = 0;
  }
  std::copy(s_new_.begin(), s_new_.end(), phys_.begin());
}

}  // namespace gpt
