// Perplexity evaluation over a long token stream, in windows of the model's context.
//
// The rule: token p (p >= 1) is predicted from the tokens before it and scored exactly once;
// token 0 has no left context and is never scored. Windows of seq_len tokens start at 0, S, 2S,
// ... (S = stride); each window scores only the tokens that no earlier window scored, so with
// S < seq_len every scored token beyond the first window sees at least seq_len - S + 1 tokens of left
// context. The last window is moved back to end exactly at the last token, so it is full length.
#pragma once
#include <cstddef>
#include <functional>
#include <span>

#include "model/gpt.h"

namespace gpt {

struct EvalOptions {
  int seq_len = 0;     // 0 = the model's context
  int stride = 0;      // 0 = seq_len (no overlap)
  int batch_size = 1;  // windows per forward pass
};

struct EvalResult {
  size_t tokens = 0;  // scored tokens (= ids.size() - 1)
  double loss = 0;    // mean cross-entropy in nats
  double perplexity = 0;
  size_t windows = 0;
};

// Any model: in training storage, or packed (f32, bf16, q8: the loss a quantized model really has).
// Throws gpt::Error on fewer than 2 tokens, ids out of the vocabulary, or bad options.
// `progress(done, total)` is called after each batch (may be empty).
EvalResult evaluate(GPT& model, std::span<const TokenId> ids, const EvalOptions& opt,
                    const std::function<void(size_t, size_t)>& progress = {});

}  // namespace gpt
