// libFuzzer: the request bodies of gpt serve (serve/openai_api.h). The first byte picks the
// endpoint. Parsing any bytes either gives a request or throws ApiError with a 4xx status; an
// accepted request holds only valid settings, and its responses and error objects serialise.
#include <cstdlib>
#include <string_view>

#include "serve/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gpt::serve;
  if (size == 0) return 0;
  const Endpoint ep = data[0] & 1 ? Endpoint::Chat : Endpoint::Completions;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
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
  if (r.max_tokens && *r.max_tokens < 1) std::abort();
  for (const auto& s : r.stop)
    if (s.empty()) std::abort();
  if (ep == Endpoint::Chat && r.messages.empty()) std::abort();
  // The responses build for any accepted request.
  static const auto tok = gpt::gpt2_tokenizer();
  Choice c;
  c.finish_reason = "length";
  for (const auto& ids : r.prompt_ids)
    for (gpt::TokenId id : ids) c.tokens.push_back({id % 50257, "x", -1.0f, {{id % 50257, -1.0f}}});
  const ResponseMeta m = make_meta(ep, r.model);
  completion_response(r, m, {c}, Usage{}, *tok)
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string finish = "stop";
  chunk_response(r, m, 0, c.tokens, "x", &finish, 0, *tok)
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
