// Incremental decoding with a key/value cache, over a GPT on any backend: rows of tokens, each
// with its cache, prefilled, stepped one token per row (all rows in one pass), their next-token
// logits on the host, copied and reordered for beam search. Every pass is GPT::forward_cached: the
// same transformer as training, with the cache as an option. See docs/kv-cache.md.
//
// Memory is planned at construction, in backend memory: the cache (model/kv_cache.h: every layer's
// keys and values for max_batch rows of n_ctx positions, of the backend's cache type for the model's
// weights), the activations of a pass of up to max(chunk, max_batch) inputs, and host logits for
// every row. prefill() and step() allocate nothing.
//
// Context-full policy: the model always sees the last n_ctx tokens of a row. When a row's cache
// is full and another token comes, the cache is rebuilt from the row's last n_ctx - 1 tokens
// (a prefill, positions restarting at 0) and the token is then added at position n_ctx - 1.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "model/gpt.h"
#include "model/kv_cache.h"

namespace gpt {

class Decoder {
 public:
  // The model must outlive the decoder; its weights are read in place (upload a device model's
  // changes with upload_parameters). chunk: the most tokens one pass runs (longer prefills run in
  // pieces); 0 = min(n_ctx, 512). kv: the cache type, when not the backend's choice for the weights.
  Decoder(GPT& model, int max_batch, int chunk = 0, std::optional<KvType> kv = std::nullopt);
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  const ModelConfig& config() const { return cfg_; }
  GPT& model() const { return model_; }
  int max_batch() const { return max_batch_; }
  int vocab() const { return cfg_.vocab_size; }

  // Row `row` forgets its cache and takes `tokens` (only the last n_ctx of them if longer; at
  // least one). The next-token logits of the last position go to logits(row). With all_logits
  // (non-null, [T, V] for the T tokens kept) every position's logits are written there too.
  void prefill(int row, std::span<const TokenId> tokens, float* all_logits = nullptr);
  // Every position's logits in bounded memory (scoring a prompt, the server's `echo`): passes of at
  // most `rows` tokens write their logits to `buf` ([rows, V] host floats, the caller's), and
  // each(t0, n, buf) reads positions t0 .. t0+n-1 before the next pass overwrites them.
  struct PositionLogits {
    float* buf = nullptr;
    int rows = 0;
    std::function<void(int t0, int n, const float* logits)> each;
  };
  void prefill(int row, std::span<const TokenId> tokens, const PositionLogits& sink);
  // Appends tokens[i] to row rows[i] (distinct rows, each prefilled before) and computes each
  // row's next-token logits, all rows in one pass. A full row first slides (see above).
  void step(std::span<const int> rows, std::span<const TokenId> tokens);
  // The next-token logits [V] of `row` from its last prefill or step, fp32 host memory.
  const float* logits(int row) const;
  float* logits(int row);

  // Row dst becomes a copy of row src (its cache, tokens and logits).
  void copy_row(int dst, int src);
  // Beam reordering: new row i = old row parents[i] for i < parents.size() (a row may be the
  // parent of several); rows beyond parents.size() are emptied. Shares cache storage through a
  // row map and copies only where a parent has more than one child. The logits of the new rows
  // are undefined until their next step.
  void reorder(std::span<const int> parents);
  // Empties a row.
  void reset(int row);

  // The tokens in a row's cache, oldest first (at most n_ctx).
  std::span<const TokenId> window(int row) const;
  int length(int row) const { return len_[phys_[row]]; }
  // Cache rebuilds so far (each one a prefill of n_ctx - 1 tokens), for tests and benchmarks.
  size_t rebuilds() const { return rebuilds_; }
  size_t cache_bytes() const { return cache_.bytes(); }
  KvType cache_type() const { return cache_.type(); }
  size_t activation_bytes() const;

  // Arms a capture for the next prefill only: the attention probabilities of (layer, head) go to
  // out [T, T] (T = the tokens the prefill keeps; row i = query i over keys 0..T-1, zero where the
  // mask hides a key). For the playground's attention view (serve/attention.h); the CPU backends.
  void capture_attention(int layer, int head, float* out);
  // Arms an observer (model/gpt.h: attention captures, residual-stream states, the logit lens) for
  // the next prefill only; null disarms. It sees each pass of the prefill (at most `chunk` tokens:
  // a decoder whose chunk covers the prompt shows it in one pass, input i = position i).
  void observe(ForwardObserver* observer);

 private:
  void run_prefill(int prow, std::span<const TokenId> tokens, float* last_logits, float* all_logits,
                   const PositionLogits* sink = nullptr);
  void copy_phys(int dst, int src);

  GPT& model_;
  ModelConfig cfg_;
  int max_batch_, chunk_, V_;
  KvCache cache_;
  GPT::WorkspacePtr ws_;  // a pass of up to max(chunk, max_batch) inputs

  std::vector<TokenId> tokens_;  // [max_batch][n_ctx] by physical row
  std::vector<int> len_;         // by physical row
  std::vector<int> phys_;        // logical row -> physical row
  std::vector<float> logits_;    // [max_batch][V] by logical row, then [max_batch][V] of one step
  // scratch, sized once: a pass's inputs, reordering
  std::vector<int32_t> s_rows_, s_pos_;
  std::vector<TokenId> s_ids_;
  std::vector<int> s_old_, s_new_;
  std::vector<char> s_used_;
  size_t rebuilds_ = 0;
  // the armed attention capture (capture_attention): an observer of one layer
  struct CaptureOne : ForwardObserver {
    int layer = -1;
    ops::AttentionCapture cap;
    const ops::AttentionCapture* attention_capture(int l) override { return l == layer ? &cap : nullptr; }
  };
  CaptureOne cap_;
  ForwardObserver* observer_ = nullptr;   // armed for the next prefill (observe)
  const PositionLogits* sink_ = nullptr;  // armed for one prefill by the sink overload
};

}  // namespace gpt
