// The OpenAI-compatible request and response formats of `gpt serve` (docs/serving.md): request
// JSON parsed and validated into a CompletionRequest, errors as OpenAI's error object, and the
// builders of completion, chat.completion and streaming chunk objects. No HTTP here: the parser
// is fuzzed on its own (fuzz/fuzz_openai_request.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "finetune/template.h"
#include "generate/generator.h"
#include "tokenizer/tokenizer.h"

namespace gpt::serve {

// A request the server refuses: HTTP status, OpenAI error type, the offending parameter (may be
// empty) and one line of explanation.
struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string param;
  std::string message;
  std::string code;  // OpenAI's "code" (e.g. "invalid_api_key"); empty = null
};

// {"error": {"message", "type", "param", "code"}}
nlohmann::json error_json(const ApiError& e);
[[noreturn]] void throw_api(int status, std::string param, std::string message);

enum class Endpoint { Completions, Chat };

using gpt::ChatMessage;  // finetune/template.h: role and content

// One validated request of either endpoint.
struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;
  // Completions: one prompt per entry (a string, a list of strings, token ids or lists of ids);
  // chat: the messages, rendered by chat_prompt_ids().
  std::vector<std::string> prompt_texts;
  std::vector<std::vector<TokenId>> prompt_ids;  // used when prompt_texts is empty
  std::vector<ChatMessage> messages;
  std::optional<int> max_tokens;  // absent: 16 for completions, the rest of the context for chat;
                                  // 0 (completions only): nothing generated, for `echo`
  bool echo = false;              // completions: the prompt comes back before the completion
  SamplingSettings sampling;      // temperature 0 = greedy; top_k 0 = off
  bool seeded = false;            // seed given
  int n = 1;
  std::vector<std::string> stop;
  int logprobs = -1;  // -1: none; else the number of alternatives per token (0..20)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Limits the parser enforces beside the types: most choices per request (the server's slots).
struct ApiLimits {
  int max_choices = 64;
};

// Parses a request body. Throws ApiError (400) on malformed JSON, wrong types, out-of-range
// values and unknown fields; ignores the fields OpenAI accepts that change nothing here (user,
// presence/frequency penalties at 0, ...).
CompletionRequest parse_request(std::string_view body, Endpoint ep, const ApiLimits& limits = {});

// Chat prompts: finetune/template.h's chat template (chat_prompt_ids), ending with the assistant's
// turn header; the reply ends at <|endoftext|>.

// A token as OpenAI's logprobs show it: its text (invalid UTF-8 bytes replaced).
std::string token_text(const Tokenizer& tok, TokenId id);

// One token of one choice, as the responses need it: generated, or a prompt token sent back by
// `echo` (which usage does not count as completion).
struct ChoiceToken {
  TokenId id = 0;
  std::string text;  // what it adds to the choice's text (maybe empty)
  float logprob = 0;
  std::vector<std::pair<TokenId, float>> top;  // alternatives when logprobs were asked
  bool echoed = false;
  bool scored = true;  // false for a prompt's first token: nothing predicts it (logprob null)
};

// A finished choice.
struct Choice {
  std::string text;
  std::vector<ChoiceToken> tokens;
  std::string finish_reason;  // "stop" | "length"
};

struct Usage {
  int prompt_tokens = 0, completion_tokens = 0;
};

// Response ids ("cmpl-..." / "chatcmpl-...") and the creation time, fixed per request.
struct ResponseMeta {
  std::string id, model;
  int64_t created = 0;
};
ResponseMeta make_meta(Endpoint ep, const std::string& model);

// The non-streamed response object.
nlohmann::json completion_response(const CompletionRequest& r, const ResponseMeta& m,
                                   const std::vector<Choice>& choices, const Usage& u, const Tokenizer& tok);
// One streamed chunk: the token(s) of one choice (finish_reason null unless finish given).
// text_offset is the choice's text length before this chunk (completions logprobs).
nlohmann::json chunk_response(const CompletionRequest& r, const ResponseMeta& m, int index,
                              const std::vector<ChoiceToken>& tokens, const std::string& text,
                              const std::string* finish, size_t text_offset, const Tokenizer& tok);
// Chat streams start with a chunk carrying the assistant role.
nlohmann::json chat_role_chunk(const ResponseMeta& m, int index);
// The last chunk when stream_options.include_usage: no choices, the usage.
nlohmann::json usage_chunk(const CompletionRequest& r, const ResponseMeta& m, const Usage& u);

// ---- /v1/embeddings ---------------------------------------------------------------------------------

// One validated embeddings request (docs/embeddings.md). OpenAI's fields, plus two of gpt.cpp's:
// `pooling` ("mean", the default, or "last") and `normalize` (default true: unit vectors, as
// OpenAI's are).
struct EmbeddingRequest {
  std::string model;
  // `input`: one entry per input, texts (a string or an array of strings) or token ids (an array of
  // ids or an array of such arrays); never empty, no empty entry.
  std::vector<std::string> texts;
  std::vector<std::vector<TokenId>> ids;  // used when texts is empty
  bool base64 = false;                    // encoding_format "base64" (else "float")
  std::optional<int64_t> dimensions;      // must equal the model's width (checked by the server)
  std::string pooling = "mean";
  bool normalize = true;
  size_t inputs() const { return texts.empty() ? ids.size() : texts.size(); }
};

// The most inputs one request may hold (OpenAI's limit).
inline constexpr size_t kMaxEmbeddingInputs = 2048;

// Parses an embeddings body. Throws ApiError (400, with the offending `param`) on malformed JSON,
// wrong types, an empty input or an empty entry, more than kMaxEmbeddingInputs inputs, an unknown
// encoding_format or pooling, and unknown fields.
EmbeddingRequest parse_embedding_request(std::string_view body);

// {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}:
// `vectors` is [inputs, dim]; each embedding a list of floats, or with base64 the string of its
// little-endian float32 bytes.
nlohmann::json embedding_response(const EmbeddingRequest& r, const std::string& model,
                                  const std::vector<float>& vectors, int dim, int prompt_tokens);
// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);

}  // namespace gpt::serve
