// The playground's attention view (POST /v1/attention): for one layer and one head, how much each
// prompt token attends to each earlier token: the softmax probabilities of the causal (or, in
// GPT-3's banded layers, band-limited) attention, as the KV-cache Decoder computes them in a
// prefill. See docs/playground.md. Also the playground's logit lens (POST /v1/inspect).
#pragma once
#include <nlohmann/json.hpp>

#include <span>
#include <vector>

#include "model/gpt.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// The most prompt tokens one request may ask about (the map is T x T numbers).
constexpr int kMaxAttentionTokens = 256;

// The attention probabilities [T, T] (row-major; row i: query i over keys 0..T-1, zero where the
// mask hides a key) of (layer, head) for the token ids (T = ids.size(): 1..min(n_ctx, 256)).
// Throws gpt::Error on a bad layer, head or length.
std::vector<float> attention_weights(GPT& model, std::span<const TokenId> ids, int layer,
                                     int head);

// The response object for ids: {"tokens": [token text], "ids", "layer", "head", "n_layer",
// "n_head", "banded", "band", "weights": [[T numbers] x T]}. tok may be null (tokens as "#id").
nlohmann::json attention_json(GPT& model, const Tokenizer* tok, std::span<const TokenId> ids,
                              int layer, int head);

// POST /v1/attention: {"prompt": str, "layer": int (default 0), "head": int (default 0)} ->
// attention_json of the prompt's tokens. Bad input throws gpt::Error (the server answers 400).
nlohmann::json attention_response(GPT& model, const Tokenizer& tok, const nlohmann::json& req);
// The same from the raw request body, parsed by core/json.h (a depth limit; bad JSON is gpt::Error).
nlohmann::json attention_response(GPT& model, const Tokenizer& tok, std::string_view body);

// POST /v1/inspect (the playground's logit-lens view): {"prompt": str, "top_k": int (default 5,
// 1..20)} -> inspection_json (generate/inspect.h) of the prompt's tokens with the lens at every
// position; at most kMaxAttentionTokens tokens. Bad input throws gpt::Error (the server answers 400).
nlohmann::json inspect_response(GPT& model, const Tokenizer& tok, const nlohmann::json& req);

}  // namespace gpt
