// Incremental decoding with a key/value cache over a GPT on any Backend: the GPU's generation path
// (`gpt generate --device cuda`), also run on the CPU through the staged backend for the tests.
// The same API and context-full policy as the packed-weight Decoder (decoder.h, docs/kv-cache.md);
// here every operation is a Backend call on the model's own parameters in backend memory, and only
// the logits come back to the host (the samplers run on the CPU).
//
// Memory is planned at construction, all in backend memory: the caches, per layer K and V for
// max_batch rows of n_ctx positions ([layer][row][head][position][head_dim], of the backend's
// activation type: bf16 on "cuda", fp32 on "cuda-fp32" and the CPU), the activations of one pass
// of up to max(n_ctx, max_batch) rows, and the logits of max(max_batch, 64) rows. prefill() and step()
// allocate nothing.
//
// A prefill runs the row's tokens (positions 0..T-1) through GPT::forward's ops, attention
// included (Backend::attention_forward over the prompt's qkv), and writes every layer's keys and
// values into the cache (Backend::kv_cache_write). A step runs one token per row: its key and value
// go into the cache, then Backend::attention_decode attends from its query over the row's cache.
#pragma once
#include <span>
#include <vector>

#include "backend/backend.h"
#include "generate/row_decoder.h"
#include "model/gpt.h"

namespace gpt {

class DeviceDecoder final : public RowDecoder {
 public:
  // Uploads the model's parameters once (if it runs on a device) and reads them in place: the
  // model must outlive the decoder, and a later change of its weights is not seen.
  DeviceDecoder(GPT& model, int max_batch);
  DeviceDecoder(const DeviceDecoder&) = delete;
  DeviceDecoder& operator=(const DeviceDecoder&) = delete;

  const ModelConfig& config() const override { return cfg_; }
  int max_batch() const override { return max_batch_; }
  int vocab() const override { return V_; }
  Backend& backend() const { return be_; }

  void prefill(int row, std::span<const TokenId> tokens, float* all_logits = nullptr) override;
  void step(std::span<const int> rows, std::span<const TokenId> tokens) override;
  const float* logits(int row) const override;
  float* logits(int row) override;
  void copy_row(int dst, int src) override;
  // Shares cache slots through a row map, as Decoder::reorder: copies only for a parent with
  // several children.
  void reorder(std::span<const int> parents) override;
  void reset(int row);

  std::span<const TokenId> window(int row) const;
  int length(int row) const { return len_[phys_[row]]; }
  size_t rebuilds() const { return rebuilds_; }
  size_t cache_bytes() const { return kv_.bytes(); }
  size_t activation_bytes() const { return acts_.bytes(); }

 private:
  // One pass over n inputs: token ids[i] at position pos[i] of physical row prow[i]. A prefill is
  // one row's positions 0..n-1 (attention over the pass itself); otherwise every input is a
  // different row (attention over the cache). Logits of the inputs in [want0, n) to host_out
  // ([n - want0, V]), or of none when host_out is null.
  void forward(int n, const int* prow, const int* pos, const TokenId* ids, bool prefill, int want0,
               float* host_out);
  void run_prefill(int prow, std::span<const TokenId> tokens, float* last_logits, float* all_logits);
  Act* k_cache(int l) const;
  Act* v_cache(int l) const;
  void copy_phys(int dst, int src);

  GPT& model_;
  Backend& be_;
  ModelConfig cfg_;
  ModelTensors w_;  // over the parameters in backend memory
  int max_batch_, rows_cap_, head_rows_, C_, H_, V_;
  size_t es_;  // bytes per activation element

  BackendBuffer kv_;    // [2][L][max_batch][H][n_ctx][hs]
  BackendBuffer acts_;  // one pass
  Act *x_, *ln1_, *qkv_, *atty_, *proj_, *res2_, *ln2_, *fch_, *fch_gelu_, *res3_, *lnf_, *logits_dev_;
  float *mean_, *rstd_;
  void* scratch_;
  int32_t* io_;  // ids, positions and rows of a pass, one upload: [3][rows_cap]

  std::vector<TokenId> tokens_;  // [max_batch][n_ctx] by physical row
  std::vector<int> len_;         // by physical row
  std::vector<int> phys_;        // logical row -> physical row
  std::vector<float> logits_;    // [max_batch][V] by logical row
  std::vector<float> step_logits_;
  std::vector<int32_t> s_io_;
  std::vector<int> s_prow_, s_pos_, s_old_, s_new_;
  std::vector<TokenId> s_ids_;
  std::vector<char> s_used_;
  size_t rebuilds_ = 0;
};

}  // namespace gpt
