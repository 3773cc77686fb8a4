// libFuzzer: what gpt serve parses of a request. The first byte picks: with its top bit set, the
// header checks (serve/http_checks.h: Host, Origin, Authorization) on the rest split at the first
// newline; else with bit 0x40 an embeddings body (/v1/embeddings); else the body of the endpoint
// its lowest bit names (serve/openai_api.h). Parsing any bytes either gives a request or throws
// ApiError with a 4xx status; an accepted request holds only valid settings, and its responses
// and error objects serialise. The header checks never crash, and what they accept is well formed.
#include <cstdlib>
#include <string_view>
#include <vector>

#include "generate/embed.h"
#include "serve/http_checks.h"
#include "serve/openai_api.h"

namespace {

void check_headers(std::string_view a, std::string_view b) {
  using namespace gpt::serve;
  const auto h = parse_host(a);
  if (h && (h->host.empty() || h->port < -1 || h->port > 65535)) std::abort();
  if (h)
    for (char c : h->host)
      if (c >= 'A' && c <= 'Z') std::abort();  // lower-cased
  const auto o = parse_origin(a);
  if (o && (o->host.empty() || o->port < 0 || o->port > 65535)) std::abort();
  if (loopback_host_allowed(a, {std::string(b)}) && !h) std::abort();
  if (same_origin(a, b) && (!o || !parse_host(b))) std::abort();
  if (same_origin(a, b) != same_origin(a, b)) std::abort();
  is_loopback_host(a);
  // A key matches exactly "Bearer KEY" (any case of the scheme), nothing else.
  if (bearer_matches(a, b) && (a.size() != 7 + b.size() || a.substr(7) != b)) std::abort();
  if (!b.empty() && !bearer_matches("Bearer " + std::string(b), b)) std::abort();
}

// /v1/embeddings: a request or a 4xx ApiError; an accepted one has 1..2048 non-empty inputs of one
// kind, a known pooling, and its response (float and base64) serialises.
void check_embeddings(std::string_view body) {
  using namespace gpt::serve;
  EmbeddingRequest r;
  try {
    r = parse_embedding_request(body);
  } catch (const ApiError& e) {
    if (e.status < 400 || e.status > 499 || e.message.empty()) std::abort();
    error_json(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  if (r.inputs() == 0 || r.inputs() > kMaxEmbeddingInputs) std::abort();
  if (!r.texts.empty() && !r.ids.empty()) std::abort();
  for (const auto& t : r.texts)
    if (t.empty()) std::abort();
  for (const auto& ids : r.ids)
    if (ids.empty()) std::abort();
  if (!gpt::parse_pooling(r.pooling)) std::abort();
  if (r.dimensions && *r.dimensions < 1) std::abort();
  const int dim = 3;
  std::vector<float> v(r.inputs() * dim);
  for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<float>(i) * 0.5f - 1.0f;
  for (bool b64 : {false, true}) {
    r.base64 = b64;
    embedding_response(r, r.model, v, dim, 1).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gpt::serve;
  if (size == 0) return 0;
  if (data[0] & 0x80) {
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const size_t nl = rest.find('\n');
    check_headers(rest.substr(0, nl),
                  nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1));
    return 0;
  }
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 0x40) {
    check_embeddings(body);
    return 0;
  }
  const Endpoint ep = data[0] & 1 ? Endpoint::Chat : Endpoint::Completions;
  ApiLimits limits;
  limits.max_choices = 8;
  CompletionRequest r;
  try {
    r = parse_request(body, ep, limits);
  } catch (const ApiError& e) {
    if (e.status < 400 || e.status > 499 || e.message.empty()) std::abort();
    error_json(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return 0;
  }
  r.sampling.validate();  // must not throw: the parser checked every setting
  const size_t prompts = ep == Endpoint::Chat ? 1 : r.prompt_texts.size() + r.prompt_ids.size();
  if (prompts == 0 || r.n < 1 || prompts * r.n > 8) std::abort();
  if (r.logprobs < -1 || r.logprobs > 20) std::abort();
  // max_tokens 0 (nothing generated: a prompt scored with echo) is for completions only.
  if (r.max_tokens && *r.max_tokens < (ep == Endpoint::Chat ? 1 : 0)) std::abort();
  if (r.echo && ep == Endpoint::Chat) std::abort();
  for (const auto& s : r.stop)
    if (s.empty()) std::abort();
  if (ep == Endpoint::Chat && r.messages.empty()) std::abort();
  // The responses build for any accepted request.
  static const auto tok = gpt::gpt2_tokenizer();
  Choice c;
  c.finish_reason = "length";
  for (const auto& ids : r.prompt_ids)
    for (gpt::TokenId id : ids) {
      // As echo sends a prompt back: the first token unscored, the others scored.
      ChoiceToken t{id % 50257, "x", -1.0f, {{id % 50257, -1.0f}}};
      t.echoed = r.echo;
      t.scored = !r.echo || !c.tokens.empty();
      c.tokens.push_back(std::move(t));
    }
  const ResponseMeta m = make_meta(ep, r.model);
  completion_response(r, m, {c}, Usage{}, *tok)
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string finish = "stop";
  chunk_response(r, m, 0, c.tokens, "x", &finish, 0, *tok)
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
