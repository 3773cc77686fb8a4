// Incremental decoding over a PackedModel with a key/value cache: each new token runs through the
// network once, attending to the keys and values its row has cached, instead of re-running the
// whole sequence. See docs/kv-cache.md.
//
// Memory is planned at construction: per layer, K and V caches for max_batch rows of n_ctx
// positions ([layer][row][head][position][head_dim], fp32), the activations of a chunk of up to
// `chunk` tokens, and the logits. prefill() and step() allocate nothing.
//
// The math is GPT::forward's (model/gpt.cpp), op for op: embeddings, pre-LN or post-LN blocks,
// dense or banded causal attention, the final LayerNorm (pre-LN only), the LM head.
//
// Context-full policy: the model always sees the last n_ctx tokens of a row. When a row's cache
// is full and another token comes, the cache is rebuilt from the row's last n_ctx - 1 tokens
// (a prefill, positions restarting at 0) and the token is then added at position n_ctx - 1.
#pragma once
#include <span>
#include <vector>

#include "core/arena.h"
#include "generate/row_decoder.h"
#include "model/packed_model.h"

namespace gpt {

// How the cache stores keys and values. Auto: fp32 for f32 weights (exact), fp16 for bf16 and q8
// weights (half the memory and half the bytes each step reads, for models already rounded).
enum class KvCacheType { Auto, F32, F16 };

class Decoder final : public RowDecoder {
 public:
  // chunk: the most tokens one pass runs (longer prefills run in pieces); 0 = min(n_ctx, 512).
  Decoder(const PackedModel& model, int max_batch, int chunk = 0, KvCacheType kv = KvCacheType::Auto);
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  const ModelConfig& config() const override { return cfg_; }
  int max_batch() const override { return max_batch_; }
  int vocab() const override { return cfg_.vocab_size; }

  // Row `row` forgets its cache and takes `tokens` (only the last n_ctx of them if longer; at
  // least one). The next-token logits of the last position go to logits(row). With all_logits
  // (non-null, [T, V] for the T tokens kept) every position's logits are written there too.
  void prefill(int row, std::span<const TokenId> tokens, float* all_logits = nullptr) override;
  // Appends tokens[i] to row rows[i] (distinct rows, each prefilled before) and computes each
  // row's next-token logits, all rows in one pass.
  void step(std::span<const int> rows, std::span<const TokenId> tokens) override;
  // The next-token logits [V] of `row` from its last prefill or step.
  const float* logits(int row) const override;
  float* logits(int row) override;

  // Row dst becomes a copy of row src (its cache, tokens and logits).
  void copy_row(int dst, int src) override;
  // Beam reordering: new row i = old row parents[i] for i < parents.size() (a row may be the
  // parent of several); rows beyond parents.size() are emptied. Shares cache storage through a
  // row map and copies only where a parent has more than one child. The logits of the new rows
  // are undefined until their next step.
  void reorder(std::span<const int> parents) override;
  // Empties a row.
  void reset(int row);

  // The tokens in a row's cache, oldest first (at most n_ctx).
  std::span<const TokenId> window(int row) const;
  int length(int row) const { return len_[phys_[row]]; }
  // Cache rebuilds so far (each one a prefill of n_ctx - 1 tokens), for tests and benchmarks.
  size_t rebuilds() const { return rebuilds_; }
  size_t cache_bytes() const { return kv_.bytes(); }
  KvCacheType cache_type() const { return kv_f16_ ? KvCacheType::F16 : KvCacheType::F32; }
  size_t activation_bytes() const { return acts_.bytes() + logits_.bytes(); }

  // Arms a capture for the next prefill only: the attention probabilities of (layer, head) go to
  // out [T, T] (T = the tokens the prefill keeps; row i = query i over keys 0..T-1, zero where the
  // mask hides a key). For the playground's attention view (serve/attention.h).
  void capture_attention(int layer, int head, float* out);

 private:
  struct Layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const ops::PackedMatrix *qkv, *proj, *fc, *fc_proj;
    const float *qkv_b, *proj_b, *fc_b, *fc_proj_b;
  };
  // One pass over n input rows: input i is token ids[i] at position pos[i] of physical row prow[i].
  // Positions of one row in one pass are consecutive. Writes logits for the inputs listed in
  // want (indices into the pass) to out[k * V].
  void forward(int n, const int* prow, const int* pos, const TokenId* ids, std::span<const int> want,
               float* out);
  // Rebuilds physical row prow's cache from `tokens`; logits of the last position to last_logits
  // and of every position to all_logits when these are non-null.
  void attention(int l, int n, const int* prow, const int* pos);
  void run_prefill(int prow, std::span<const TokenId> tokens, float* last_logits, float* all_logits);
  // Where (layer, physical row, head)'s keys or values start: fp32 or fp16 elements.
  char* k_cache(int l, int prow, int h) const;
  char* v_cache(int l, int prow, int h) const;
  void copy_phys(int dst, int src);

  const PackedModel& model_;
  ModelConfig cfg_;
  int max_batch_, chunk_, C_, H_, hs_, V_;
  std::vector<Layer> layers_;
  const float *wpe_, *lnf_w_, *lnf_b_;
  const ops::PackedMatrix *wte_, *head_;

  FloatArena kv_;  // K then V: [2][L][max_batch][H][n_ctx][hs], fp32 or fp16
  bool kv_f16_ = false;
  size_t kv_elem_ = 4;           // bytes per cached element
  std::vector<TokenId> tokens_;  // [max_batch][n_ctx] by physical row
  std::vector<int> len_;         // by physical row
  std::vector<int> phys_;        // logical row -> physical row
  FloatArena logits_;            // [max_batch][V] by logical row
  FloatArena acts_;              // activations of one pass
  float *x_, *ln_, *qkv_, *atty_, *proj_, *res_, *fch_, *gelu_, *mean_, *rstd_, *head_in_;
  float* work_;   // per thread: scores of a block, and fp16 keys and values converted to fp32
  int rows_cap_;  // input rows one pass can hold
  int threads_;   // attention work buffers (one per thread)
  size_t work_per_thread_;
  // scratch, sized once: a pass's inputs, the wanted positions, attention blocks, reordering
  std::vector<int> s_prow_, s_pos_, s_want_, s_blocks_, s_old_, s_new_;
  std::vector<TokenId> s_ids_;
  std::vector<char> s_used_;
  size_t rebuilds_ = 0;
  // the armed attention capture (capture_attention): layer, head, [T, T] output and its T
  int cap_layer_ = -1, cap_head_ = -1, cap_T_ = 0;
  float* cap_out_ = nullptr;
};

}  // namespace gpt
