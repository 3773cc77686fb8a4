// The key/value cache of incremental decoding: every layer's keys and values for `rows` cache rows
// of n_ctx positions, in backend memory, [2][layer][row][head][position][head_dim], of the type the
// backend keeps for the model's weights (Backend::kv_cache_type: fp32 next to fp32 weights, IEEE
// half next to bf16 or q8 ones on the CPU; the activation type on CUDA). GPT::forward_cached writes
// and reads it; generate/decoder.h owns one per decoder. See docs/kv-cache.md.
#pragma once
#include <cstddef>

#include "backend/backend.h"
#include "model/config.h"

namespace gpt {

class GPT;

class KvCache {
 public:
  KvCache(const GPT& model, int rows);
  KvCache(Backend& be, const ModelConfig& cfg, int rows, KvType type);

  int rows() const { return rows_; }
  KvType type() const { return type_; }
  size_t bytes() const { return buf_.bytes(); }
  // Layer l's keys and values, [rows][H][n_ctx][head_dim] each.
  void* k(int l) const;
  void* v(int l) const;
  // Positions [0, n) of row dst become row src's, in every layer and head.
  void copy_row(int dst, int src, int n);

 private:
  Backend* be_;
  ModelConfig cfg_;
  int rows_;
  KvType type_;
  size_t layer_bytes_ = 0;  // one layer's keys (or values): rows * n_ctx * C elements
  BackendBuffer buf_;
};

}  // namespace gpt
