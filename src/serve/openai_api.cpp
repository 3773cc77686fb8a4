#include "serve/openai_api.h"

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "core/json.h"
#include "generate/utf8_stream.h"
#include "tokenizer/ids_text.h"

namespace gpt::serve {

using nlohmann::json;

json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

void throw_api(int status, std::string param, std::string message) {
  ApiError e;
  e.status = status;
  e.param = std::move(param);
  e.message = std::move(message);
  throw e;
}

namespace {

// Deeper nesting than any valid request is refused before parsing (core/json.h), so no input can
// make anything that walks the tree recurse without bound.
constexpr int kMaxDepth = 32;

const char* type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

[[noreturn]] void wrong_type(const std::string& key, const json& v, const char* want) {
  throw_api(400, key, fmt::format("'{}' must be {}, got {}", key, want, type_name(v)));
}

// Typed getters: the value of a present, non-null field, or the type error OpenAI gives.
double get_number(const std::string& key, const json& v, double lo, double hi) {
  if (!v.is_number()) wrong_type(key, v, "a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw_api(400, key, fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, x));
  return x;
}

int64_t get_int(const std::string& key, const json& v, int64_t lo, int64_t hi) {
  if (!v.is_number_integer() && !(v.is_number_float() && v.get<double>() == std::floor(v.get<double>())))
    wrong_type(key, v, "an integer");
  const double d = v.get<double>();
  // A float stands for an integer only where doubles are exact (and converting it is defined).
  bool ok;
  if (v.is_number_float()) {
    ok = std::fabs(d) < 0x1p53 && d >= static_cast<double>(lo) && d <= static_cast<double>(hi);
  } else if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    ok = hi >= 0 && u <= static_cast<uint64_t>(hi) && (lo <= 0 || u >= static_cast<uint64_t>(lo));
  } else {
    ok = v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  }
  if (!ok) throw_api(400, key, fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, v.dump()));
  if (v.is_number_float()) return static_cast<int64_t>(d);
  return v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
}

bool get_bool(const std::string& key, const json& v) {
  if (!v.is_boolean()) wrong_type(key, v, "a boolean");
  return v.get<bool>();
}

std::string get_string(const std::string& key, const json& v) {
  if (!v.is_string()) wrong_type(key, v, "a string");
  return v.get<std::string>();
}

// A token id list: non-empty array of ids below 2^31 (the model's range is checked later).
std::vector<TokenId> get_ids(const std::string& key, const json& v) {
  std::vector<TokenId> ids;
  for (const auto& t : v) ids.push_back(static_cast<TokenId>(get_int(key, t, 0, (1ll << 31) - 1)));
  return ids;
}

void parse_prompt(CompletionRequest& r, const json& p) {
  const std::string key = "prompt";
  if (p.is_string()) {
    r.prompt_texts.push_back(p.get<std::string>());
    return;
  }
  if (!p.is_array() || p.empty())
    wrong_type(key, p, "a string, an array of strings or an array of token ids");
  if (p[0].is_string()) {
    for (const auto& s : p) r.prompt_texts.push_back(get_string(key, s));
  } else if (p[0].is_array()) {
    for (const auto& ids : p) {
      if (!ids.is_array() || ids.empty()) wrong_type(key, ids, "a non-empty array of token ids");
      r.prompt_ids.push_back(get_ids(key, ids));
    }
  } else {
    r.prompt_ids.push_back(get_ids(key, p));
  }
}

std::string message_content(const json& c) {
  const std::string key = "messages.content";
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) wrong_type(key, c, "a string or an array of text parts");
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object()) wrong_type(key, part, "an object");
    const auto type = part.find("type");
    if (type == part.end() || *type != "text")
      throw_api(400, key, "only content parts of type 'text' are supported");
    const auto t = part.find("text");
    if (t == part.end()) throw_api(400, key, "a text part needs 'text'");
    text += get_string(key, *t);
  }
  return text;
}

void parse_messages(CompletionRequest& r, const json& m) {
  if (!m.is_array()) wrong_type("messages", m, "an array");
  if (m.empty()) throw_api(400, "messages", "'messages' must not be empty");
  for (const auto& msg : m) {
    if (!msg.is_object()) wrong_type("messages", msg, "an array of objects");
    ChatMessage cm;
    for (const auto& [k, v] : msg.items()) {
      if (k == "role") {
        cm.role = get_string("messages.role", v);
        if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" && cm.role != "developer")
          throw_api(400, "messages.role", fmt::format("unknown role '{}'", cm.role));
        if (cm.role == "developer") cm.role = "system";
      } else if (k == "content") {
        if (!v.is_null()) cm.content = message_content(v);
      } else if (k != "name") {
        throw_api(400, "messages." + k, fmt::format("unsupported message field '{}'", k));
      }
    }
    if (cm.role.empty()) throw_api(400, "messages.role", "every message needs a 'role'");
    r.messages.push_back(std::move(cm));
  }
}

void parse_stop(CompletionRequest& r, const json& v) {
  if (v.is_string()) {
    r.stop.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > 4) throw_api(400, "stop", "at most 4 stop sequences");
    for (const auto& s : v) r.stop.push_back(get_string("stop", s));
  } else {
    wrong_type("stop", v, "a string or an array of strings");
  }
  for (const auto& s : r.stop)
    if (s.empty()) throw_api(400, "stop", "stop sequences must not be empty");
}

// {"50256": -100, "198": 5.5}: token ids (as JSON object keys, decimal) to a bias in [-100, 100].
// The ids are checked against the vocabulary when the request meets the model.
void parse_logit_bias(CompletionRequest& r, const json& v) {
  if (!v.is_object()) wrong_type("logit_bias", v, "an object of token ids to numbers");
  if (v.size() > 1024) throw_api(400, "logit_bias", "at most 1024 tokens may be biased");
  for (const auto& [k, b] : v.items()) {
    const std::optional<TokenId> id = parse_token_id(k);
    if (!id) throw_api(400, "logit_bias", fmt::format("'logit_bias' keys must be token ids, got {}", json_excerpt(k)));
    r.sampling.logit_bias.emplace_back(*id, static_cast<float>(get_number("logit_bias." + k, b, -100, 100)));
  }
}

// Fields that are accepted but must keep their neutral value here.
void require_neutral(const std::string& key, const json& v) {
  if (key == "suffix") {
    throw_api(400, key, "'suffix' is not supported");
  } else if (key == "parallel_tool_calls" || key == "store") {
    get_bool(key, v);
  } else if (key == "user") {
    get_string(key, v);
  }
}

// A request body: a JSON object, nesting bounded, or a 400.
json parse_body(std::string_view body) {
  if (json_depth_exceeded(body, kMaxDepth) != std::string_view::npos)
    throw_api(400, "", fmt::format("the JSON body nests deeper than {} levels", kMaxDepth));
  std::optional<json> parsed = try_parse_json(body, nullptr, nullptr, kMaxDepth);
  if (!parsed) throw_api(400, "", "the body is not valid JSON");
  if (!parsed->is_object()) throw_api(400, "", "the body must be a JSON object");
  return std::move(*parsed);
}

}  // namespace

CompletionRequest parse_request(std::string_view body, Endpoint ep, const ApiLimits& limits) {
  const json j = parse_body(body);
  CompletionRequest r;
  r.endpoint = ep;
  r.sampling.top_k = 0;  // OpenAI has no top-k: off unless asked
  const bool chat = ep == Endpoint::Chat;
  bool have_input = false, chat_logprobs = false;
  std::optional<int> top_logprobs, best_of;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null() && key != "prompt" && key != "messages") continue;  // null = the default, as OpenAI
    if (key == "model") {
      r.model = get_string(key, v);
    } else if (key == "prompt" && !chat) {
      parse_prompt(r, v);
      have_input = true;
    } else if (key == "messages" && chat) {
      parse_messages(r, v);
      have_input = true;
    } else if (key == "max_tokens" || (chat && key == "max_completion_tokens")) {
      r.max_tokens = static_cast<int>(get_int(key, v, chat ? 1 : 0, 1 << 30));
    } else if (key == "echo" && !chat) {
      r.echo = get_bool(key, v);
    } else if (key == "temperature") {
      r.sampling.temperature = static_cast<float>(get_number(key, v, 0, 2));
    } else if (key == "top_p") {
      r.sampling.top_p = static_cast<float>(get_number(key, v, 0, 1));
      if (r.sampling.top_p <= 0) throw_api(400, key, "'top_p' must be in (0, 1]");
    } else if (key == "top_k") {
      r.sampling.top_k = static_cast<int>(get_int(key, v, 0, 1 << 30));
    } else if (key == "min_p") {
      r.sampling.min_p = static_cast<float>(get_number(key, v, 0, 1));
    } else if (key == "repetition_penalty") {
      r.sampling.repetition_penalty = static_cast<float>(get_number(key, v, 0.01, 100));
    } else if (key == "frequency_penalty") {
      r.sampling.frequency_penalty = static_cast<float>(get_number(key, v, -2, 2));
    } else if (key == "presence_penalty") {
      r.sampling.presence_penalty = static_cast<float>(get_number(key, v, -2, 2));
    } else if (key == "logit_bias") {
      parse_logit_bias(r, v);
    } else if (key == "n") {
      r.n = static_cast<int>(get_int(key, v, 1, 128));
    } else if (key == "best_of" && !chat) {
      best_of = static_cast<int>(get_int(key, v, 1, 128));
    } else if (key == "stop") {
      parse_stop(r, v);
    } else if (key == "seed") {
      r.sampling.seed = static_cast<uint64_t>(get_int(key, v, INT64_MIN, INT64_MAX));
      r.seeded = true;
    } else if (key == "logprobs") {
      if (chat) {
        chat_logprobs = get_bool(key, v);
      } else {
        r.logprobs = static_cast<int>(get_int(key, v, 0, 20));
      }
    } else if (key == "top_logprobs" && chat) {
      top_logprobs = static_cast<int>(get_int(key, v, 0, 20));
    } else if (key == "stream") {
      r.stream = get_bool(key, v);
    } else if (key == "stream_options") {
      if (!v.is_object()) wrong_type(key, v, "an object");
      for (const auto& [k2, v2] : v.items()) {
        if (k2 != "include_usage") throw_api(400, key + "." + k2, fmt::format("unknown field '{}'", k2));
        r.include_usage = get_bool(key + "." + k2, v2);
      }
    } else if (key == "user" || (!chat && key == "suffix") ||
               (chat && (key == "parallel_tool_calls" || key == "store"))) {
      require_neutral(key, v);
    } else if (key == "metadata" || key == "service_tier") {
      // accepted and ignored: they change nothing about the tokens
    } else {
      throw_api(400, key, fmt::format("unrecognized request argument supplied: {}", key));
    }
  }
  if (!have_input)
    throw_api(400, chat ? "messages" : "prompt",
              fmt::format("'{}' is required", chat ? "messages" : "prompt"));
  if (chat) {
    if (top_logprobs && !chat_logprobs)
      throw_api(400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (chat_logprobs) r.logprobs = top_logprobs.value_or(0);
  }
  if (best_of && *best_of != r.n) throw_api(400, "best_of", "'best_of' must equal 'n' (no reranking here)");
  if (!r.stream && j.contains("stream_options") && !j["stream_options"].is_null())
    throw_api(400, "stream_options", "'stream_options' needs 'stream': true");
  const size_t prompts = chat ? 1 : r.prompt_texts.size() + r.prompt_ids.size();
  if (prompts * r.n > static_cast<size_t>(limits.max_choices))
    throw_api(
        400, "n",
        fmt::format("{} choices asked, more than the server's {} slots", prompts * r.n, limits.max_choices));
  if (!r.seeded) r.sampling.seed = std::random_device{}() * 0x100000001ull + std::random_device{}();
  return r;
}

std::string token_text(const Tokenizer& tok, TokenId id) {
  if (id >= tok.vocab_size()) return fmt::format("<|{}|>", id);
  return sanitize_utf8(tok.token_bytes(id));
}

ResponseMeta make_meta(Endpoint ep, const std::string& model) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  ResponseMeta m;
  m.model = model;
  m.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  m.id = fmt::format("{}-{:016x}{:08x}", ep == Endpoint::Chat ? "chatcmpl" : "cmpl", salt, counter++);
  return m;
}

namespace {

json bytes_of(const Tokenizer& tok, TokenId id) {
  json b = json::array();
  if (id < tok.vocab_size())
    for (unsigned char c : tok.token_bytes(id)) b.push_back(c);
  return b;
}

// OpenAI's completions logprobs: parallel lists.
json completion_logprobs(const std::vector<ChoiceToken>& tokens, size_t offset, const Tokenizer& tok) {
  json t = json::array(), lp = json::array(), top = json::array(), off = json::array();
  for (const auto& c : tokens) {
    t.push_back(token_text(tok, c.id));
    if (!c.scored) {  // an echoed prompt's first token: null, as OpenAI and vLLM send it
      lp.push_back(nullptr);
      top.push_back(nullptr);
    } else {
      lp.push_back(c.logprob);
      json alt = json::object();
      for (const auto& [id, l] : c.top) alt[token_text(tok, id)] = l;
      top.push_back(std::move(alt));
    }
    off.push_back(offset);
    offset += c.text.size();
  }
  return {{"tokens", t}, {"token_logprobs", lp}, {"top_logprobs", top}, {"text_offset", off}};
}

// OpenAI's chat logprobs: one object per token.
json chat_logprobs(const std::vector<ChoiceToken>& tokens, const Tokenizer& tok) {
  json content = json::array();
  for (const auto& c : tokens) {
    json top = json::array();
    for (const auto& [id, l] : c.top)
      top.push_back({{"token", token_text(tok, id)}, {"logprob", l}, {"bytes", bytes_of(tok, id)}});
    content.push_back({{"token", token_text(tok, c.id)},
                       {"logprob", c.logprob},
                       {"bytes", bytes_of(tok, c.id)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json head(const ResponseMeta& m, const char* object) {
  return {{"id", m.id},
          {"object", object},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", nullptr}};
}

}  // namespace

json completion_response(const CompletionRequest& r, const ResponseMeta& m,
                         const std::vector<Choice>& choices, const Usage& u, const Tokenizer& tok) {
  const bool chat = r.endpoint == Endpoint::Chat;
  json out = head(m, chat ? "chat.completion" : "text_completion");
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); i++) {
    const Choice& c = choices[i];
    json lp = nullptr;
    if (r.logprobs >= 0) lp = chat ? chat_logprobs(c.tokens, tok) : completion_logprobs(c.tokens, 0, tok);
    json choice = {{"index", i}, {"logprobs", lp}, {"finish_reason", c.finish_reason}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
    } else {
      choice["text"] = c.text;
    }
    cs.push_back(std::move(choice));
  }
  out["choices"] = std::move(cs);
  out["usage"] = usage_json(u);
  return out;
}

json chunk_response(const CompletionRequest& r, const ResponseMeta& m, int index,
                    const std::vector<ChoiceToken>& tokens, const std::string& text,
                    const std::string* finish, size_t text_offset, const Tokenizer& tok) {
  const bool chat = r.endpoint == Endpoint::Chat;
  json out = head(m, chat ? "chat.completion.chunk" : "text_completion");
  json lp = nullptr;
  if (r.logprobs >= 0 && !tokens.empty())
    lp = chat ? chat_logprobs(tokens, tok) : completion_logprobs(tokens, text_offset, tok);
  json choice = {
      {"index", index}, {"logprobs", lp}, {"finish_reason", finish ? json(*finish) : json(nullptr)}};
  if (chat) {
    choice["delta"] = finish && text.empty() ? json::object() : json{{"content", text}};
  } else {
    choice["text"] = text;
  }
  out["choices"] = json::array({std::move(choice)});
  return out;
}

json chat_role_chunk(const ResponseMeta& m, int index) {
  json out = head(m, "chat.completion.chunk");
  out["choices"] = json::array({{{"index", index},
                                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                                 {"logprobs", nullptr},
                                 {"finish_reason", nullptr}}});
  return out;
}

json usage_chunk(const CompletionRequest& r, const ResponseMeta& m, const Usage& u) {
  json out = head(m, r.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = usage_json(u);
  return out;
}

// ---- /v1/embeddings ---------------------------------------------------------------------------------

namespace {

// `input`: a string, an array of strings, an array of token ids, or an array of arrays of ids.
void parse_embedding_input(EmbeddingRequest& r, const json& v) {
  const std::string key = "input";
  const char* want =
      "a string, an array of strings, an array of token ids or an array of arrays of token ids";
  if (v.is_string()) {
    r.texts.push_back(v.get<std::string>());
  } else if (!v.is_array()) {
    wrong_type(key, v, want);
  } else if (v.empty()) {
    throw_api(400, key, "'input' must not be empty");
  } else if (v.size() > kMaxEmbeddingInputs) {
    throw_api(400, key, fmt::format("'input' holds {} inputs, more than {}", v.size(), kMaxEmbeddingInputs));
  } else if (v[0].is_string()) {
    for (const auto& s : v) r.texts.push_back(get_string(key, s));
  } else if (v[0].is_array()) {
    for (const auto& ids : v) {
      if (!ids.is_array()) wrong_type(key, ids, "an array of token ids");
      r.ids.push_back(get_ids(key, ids));
    }
  } else if (v[0].is_number()) {
    r.ids.push_back(get_ids(key, v));
  } else {
    wrong_type(key, v[0], want);
  }
  for (size_t i = 0; i < r.texts.size(); i++)
    if (r.texts[i].empty()) throw_api(400, key, fmt::format("input {} is an empty string", i));
  for (size_t i = 0; i < r.ids.size(); i++)
    if (r.ids[i].empty()) throw_api(400, key, fmt::format("input {} is an empty list of token ids", i));
}

}  // namespace

EmbeddingRequest parse_embedding_request(std::string_view body) {
  const json j = parse_body(body);
  EmbeddingRequest r;
  bool have_input = false;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null() && key != "input") continue;  // null = the default, as OpenAI
    if (key == "model") {
      r.model = get_string(key, v);
    } else if (key == "input") {
      parse_embedding_input(r, v);
      have_input = true;
    } else if (key == "encoding_format") {
      const std::string f = get_string(key, v);
      if (f != "float" && f != "base64")
        throw_api(400, key,
                  fmt::format("'encoding_format' must be \"float\" or \"base64\", got {}", json_excerpt(f)));
      r.base64 = f == "base64";
    } else if (key == "dimensions") {
      r.dimensions = get_int(key, v, 1, 1 << 30);
    } else if (key == "user") {
      get_string(key, v);
    } else if (key == "pooling") {
      r.pooling = get_string(key, v);
      if (r.pooling != "mean" && r.pooling != "last")
        throw_api(400, key,
                  fmt::format("'pooling' must be \"mean\" or \"last\", got {}", json_excerpt(r.pooling)));
    } else if (key == "normalize") {
      r.normalize = get_bool(key, v);
    } else {
      throw_api(400, key, fmt::format("unrecognized request argument supplied: {}", key));
    }
  }
  if (!have_input) throw_api(400, "input", "'input' is required");
  return r;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t w = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += kDigits[(w >> k) & 63];
  }
  if (const size_t rest = bytes.size() - i; rest > 0) {
    uint32_t w = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) w |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kDigits[(w >> 18) & 63];
    out += kDigits[(w >> 12) & 63];
    out += rest == 2 ? kDigits[(w >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

json embedding_response(const EmbeddingRequest& r, const std::string& model,
                        const std::vector<float>& vectors, int dim, int prompt_tokens) {
  static_assert(std::endian::native == std::endian::little, "base64 embeddings are little-endian float32");
  json data = json::array();
  const size_t n = dim > 0 ? vectors.size() / static_cast<size_t>(dim) : 0;
  for (size_t i = 0; i < n; i++) {
    const float* v = vectors.data() + i * static_cast<size_t>(dim);
    json e;
    if (r.base64) {
      e = base64_encode(
          std::string_view(reinterpret_cast<const char*>(v), static_cast<size_t>(dim) * sizeof(float)));
    } else {
      e = json::array();
      for (int c = 0; c < dim; c++) e.push_back(v[c]);
    }
    data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", std::move(e)}});
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
}

}  // namespace gpt::serve
