// What generation needs from an incremental decoder: rows of tokens with a key/value cache each,
// prefilled, stepped one token per row, their next-token logits on the host, copied and
// reordered for beam search. Two implement it: Decoder (decoder.h: packed f32/bf16/q8 weights on
// the CPU) and DeviceDecoder (device_decoder.h: a GPT on any Backend, a GPU included).
#pragma once
#include <span>

#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

class RowDecoder {
 public:
  virtual ~RowDecoder() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int max_batch() const = 0;
  virtual int vocab() const = 0;

  // Row `row` forgets its cache and takes `tokens` (only the last n_ctx of them if longer; at
  // least one). The next-token logits of the last position go to logits(row); with all_logits
  // (non-null, [T, V] for the T tokens kept) every position's logits are written there too.
  virtual void prefill(int row, std::span<const TokenId> tokens, float* all_logits = nullptr) = 0;
  // Appends tokens[i] to row rows[i] (distinct rows, each prefilled before) and computes each
  // row's next-token logits, all rows in one pass. A full row first slides (the context-full
  // policy of docs/kv-cache.md: rebuilt from its last n_ctx - 1 tokens).
  virtual void step(std::span<const int> rows, std::span<const TokenId> tokens) = 0;
  // The next-token logits [V] of `row` from its last prefill or step, fp32 host memory.
  virtual const float* logits(int row) const = 0;
  virtual float* logits(int row) = 0;
  // Row dst becomes a copy of row src (its cache, tokens and logits).
  virtual void copy_row(int dst, int src) = 0;
  // Beam reordering: new row i = old row parents[i] for i < parents.size(); later rows are
  // emptied. The logits of the new rows are undefined until their next step.
  virtual void reorder(std::span<const int> parents) = 0;
};

}  // namespace gpt
