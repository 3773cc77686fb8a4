#include "serve/attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/json.h"
#include "generate/decoder.h"
#include "generate/inspect.h"
#include "generate/utf8_stream.h"

namespace gpt {

std::vector<float> attention_weights(GPT& model, std::span<const TokenId> ids, int layer,
                                     int head) {
  const ModelConfig& cfg = model.config();
  if (layer < 0 || layer >= cfg.n_layer)
    fail("attention: layer {} is out of range: the model has {} layers (0..{})", layer, cfg.n_layer,
         cfg.n_layer - 1);
  if (head < 0 || head >= cfg.n_head)
    fail("attention: head {} is out of range: the model has {} heads (0..{})", head, cfg.n_head,
         cfg.n_head - 1);
  const int T = static_cast<int>(ids.size());
  const int cap = std::min(cfg.n_ctx, kMaxAttentionTokens);
  if (T < 1) fail("attention: the prompt is empty (it needs at least one token)");
  if (T > cap)
    fail("attention: the prompt has {} tokens, more than the {} this view shows ({})", T, cap,
         cap == cfg.n_ctx ? "the model's context" : "its cap");
  // One row, one chunk: the whole prompt in one pass, its probabilities captured on the way.
  Decoder dec(model, 1, T);
  std::vector<float> w(static_cast<size_t>(T) * T);
  dec.capture_attention(layer, head, w.data());
  dec.prefill(0, ids);
  return w;
}

nlohmann::json attention_json(GPT& model, const Tokenizer* tok, std::span<const TokenId> ids,
                              int layer, int head) {
  const std::vector<float> w = attention_weights(model, ids, layer, head);
  const ModelConfig& cfg = model.config();
  const size_t T = ids.size();
  nlohmann::json tokens = nlohmann::json::array(), weights = nlohmann::json::array();
  for (TokenId id : ids)  // a token may be part of a UTF-8 character: shown with U+FFFD
    tokens.push_back(tok ? sanitize_utf8(tok->token_bytes(id)) : fmt::format("#{}", id));
  for (size_t i = 0; i < T; i++)
    weights.push_back(std::vector<float>(w.begin() + i * T, w.begin() + (i + 1) * T));
  return {{"tokens", std::move(tokens)},
          {"ids", std::vector<TokenId>(ids.begin(), ids.end())},
          {"layer", layer},
          {"head", head},
          {"n_layer", cfg.n_layer},
          {"n_head", cfg.n_head},
          {"banded", cfg.banded(layer)},
          {"band", cfg.banded(layer) ? cfg.band : 0},
          {"weights", std::move(weights)}};
}

namespace {

// req[key] as an int: `fallback` when absent, an error when it is not an integer.
int int_field(const nlohmann::json& req, const char* key, int fallback) {
  auto it = req.find(key);
  if (it == req.end()) return fallback;
  if (!it->is_number_integer()) fail("attention: '{}' must be an integer, got {}", key, json_excerpt(*it));
  const int64_t v = it->get<int64_t>();
  if (v < -1000000 || v > 1000000) fail("attention: '{}' is out of range: {}", key, v);
  return static_cast<int>(v);
}

// The request's prompt as token ids, for a view of at most kMaxAttentionTokens tokens.
std::vector<TokenId> view_prompt(GPT& model, const Tokenizer& tok, const nlohmann::json& req) {
  if (!req.is_object()) fail("attention: the request must be a JSON object");
  auto p = req.find("prompt");
  if (p == req.end()) fail("attention: 'prompt' is required");
  if (!p->is_string()) fail("attention: 'prompt' must be a string");
  const std::string& text = p->get_ref<const std::string&>();
  // A cheap bound first, so a huge text is refused without encoding it (256 tokens of text average
  // far fewer than 64 bytes each); the token count is checked exactly below.
  if (text.size() > static_cast<size_t>(kMaxAttentionTokens) * 64)
    fail("attention: the prompt is too long ({} bytes) for the attention view", text.size());
  if (tok.vocab_size() > static_cast<size_t>(model.config().vocab_size))
    fail("attention: the vocabulary has {} tokens but the model only {}", tok.vocab_size(),
         model.config().vocab_size);
  return tok.encode(text, AllowedSpecial::everything());
}

}  // namespace

nlohmann::json attention_response(GPT& model, const Tokenizer& tok, const nlohmann::json& req) {
  const std::vector<TokenId> ids = view_prompt(model, tok, req);
  const int layer = int_field(req, "layer", 0), head = int_field(req, "head", 0);
  return attention_json(model, &tok, ids, layer, head);
}

nlohmann::json inspect_response(GPT& model, const Tokenizer& tok, const nlohmann::json& req) {
  const std::vector<TokenId> ids = view_prompt(model, tok, req);
  const int top_k = int_field(req, "top_k", 5);
  if (top_k < 1 || top_k > 20) fail("inspect: 'top_k' must be between 1 and 20, got {}", top_k);
  const int cap = std::min(model.config().n_ctx, kMaxAttentionTokens);
  if (ids.size() > static_cast<size_t>(cap))
    fail("inspect: the prompt has {} tokens, more than the {} this view shows", ids.size(), cap);
  return inspection_json(inspect(model, ids, {.top_k = top_k, .all_positions = true}), &tok);
}

nlohmann::json attention_response(GPT& model, const Tokenizer& tok, std::string_view body) {
  return attention_response(model, tok, parse_json(body, "attention: the request body"));
}

}  // namespace gpt
