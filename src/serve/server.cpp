#include "serve/server.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "generate/embed.h"
#include "generate/utf8_stream.h"
#include "serve/attention.h"
#include "serve/http_checks.h"
#include "serve/openai_api.h"
#include "serve/playground.h"
#include "serve/scheduler.h"

namespace gpt::serve {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// The stack of each connection's thread: the handlers parse JSON (nesting capped at 32 levels),
// tokenize and run /v1/attention's prefill, all with their data on the heap.
constexpr size_t kThreadStack = 2 << 20;
// How often a non-streamed request that waits for its tokens looks whether its client left, and
// how long a stream waits for a token before it sends a keep-alive comment.
constexpr auto kPoll = std::chrono::milliseconds(200);
// How much of a refused body is read (and dropped) so that its client gets the answer.
constexpr size_t kDrain = 64 << 20;

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

// The state of one streamed response: the reader callback turns the job's events into
// server-sent events, buffered in `out` until the library takes them.
struct Stream {
  CompletionRequest req;
  ResponseMeta meta;
  std::shared_ptr<Job> job;
  const Tokenizer* tok = nullptr;
  std::vector<size_t> offsets;  // text so far per choice (completions logprobs' text_offset)
  int completion_tokens = 0, choices_done = 0;
  bool started = false, ended = false, finished = false;
  std::string out;
  size_t out_pos = 0;

  // A stream that did not finish (its client went away, or its response was never sent) frees
  // its slots.
  ~Stream() {
    if (job && !finished) job->cancel();
  }

  // Appends what comes next to `out`: the role chunks, the tokens so far, a keep-alive comment
  // when there are none within kPoll, or the end. False when the job ended without finishing
  // (the server is stopping).
  bool produce() {
    const bool chat = req.endpoint == Endpoint::Chat;
    if (!started) {
      started = true;
      if (chat)
        for (int i = 0; i < job->choices(); i++) out += sse(chat_role_chunk(meta, i));
    }
    std::vector<Event> evs;
    const bool more = job->wait(evs, kPoll);
    if (evs.empty() && more) {
      // Nothing yet (queued, or a long prefill): an SSE comment, which clients ignore, finds out
      // whether the client is still there.
      if (out.empty()) out = ": waiting\n\n";
      return true;
    }
    for (const auto& ev : evs) {
      if (ev.has_token && !ev.token.echoed) completion_tokens++;
      std::vector<ChoiceToken> toks;
      if (ev.has_token) toks.push_back(ev.token);
      size_t& off = offsets[ev.choice];
      if (chat) {
        if (!ev.token.text.empty() || req.logprobs >= 0)
          out += sse(chunk_response(req, meta, ev.choice, toks, ev.token.text, nullptr, off, *tok));
        if (ev.last) out += sse(chunk_response(req, meta, ev.choice, {}, "", &ev.finish_reason, off, *tok));
      } else {
        out += sse(chunk_response(req, meta, ev.choice, toks, ev.token.text,
                                  ev.last ? &ev.finish_reason : nullptr, off, *tok));
      }
      off += ev.token.text.size();
      if (ev.last) choices_done++;
    }
    if (!more) {
      if (job->cancelled() || choices_done < job->choices()) return false;
      if (req.include_usage) {
        Usage u;
        u.prompt_tokens = job->prompt_tokens();
        u.completion_tokens = completion_tokens;
        out += sse(usage_chunk(req, meta, u));
      }
      out += "data: [DONE]\n\n";
      ended = true;
    }
    return true;
  }
};

// The library's content reader: copies out what the stream produced. Blocks up to kPoll for new
// tokens (each connection has its own thread).
ssize_t read_stream(void* cls, uint64_t, char* buf, size_t max) {
  Stream& st = *static_cast<Stream*>(cls);
  try {
    while (st.out_pos == st.out.size()) {
      st.out.clear();
      st.out_pos = 0;
      if (st.ended) {
        st.finished = true;
        return MHD_CONTENT_READER_END_OF_STREAM;
      }
      if (!st.produce()) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
  } catch (const std::exception&) {
    st.job->cancel();
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  const size_t n = std::min(max, st.out.size() - st.out_pos);
  std::memcpy(buf, st.out.data() + st.out_pos, n);
  st.out_pos += n;
  return static_cast<ssize_t>(n);
}

// Called when the response is done with, also when the client went away mid-stream.
void free_stream(void* cls) { delete static_cast<Stream*>(cls); }

// What a route answers: a body, or a stream of server-sent events.
struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::unique_ptr<Stream> stream;
  bool close = false;  // "Connection: close"
};

Reply json_reply(const json& j) {
  Reply r;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

Reply error_reply(const ApiError& e) {
  Reply r;
  r.status = e.status;
  r.body = error_json(e).dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

ApiError api_error(int status, std::string message, std::string code = "") {
  ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.code = std::move(code);
  if (status >= 500) e.type = "server_error";
  return e;
}

ApiError too_large(size_t max_body) {
  return api_error(413, fmt::format("the request body is larger than the limit of {} bytes", max_body));
}

// Runs a handler, turning every failure into an OpenAI error object: the server never dies of
// a request.
template <typename F>
Reply guarded(F&& f) {
  try {
    return f();
  } catch (const ApiError& e) {
    return error_reply(e);
  } catch (const Error& e) {
    return error_reply(api_error(400, e.what()));
  } catch (const std::bad_alloc&) {
    return error_reply(api_error(500, "out of memory"));
  } catch (const std::exception& e) {
    return error_reply(api_error(500, e.what()));
  }
}

// The client of a connection has gone (closed, reset, or at least shut its sending side).
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

enum class Route {
  None,
  Completions,
  Chat,
  Embeddings,
  Models,
  Health,
  Metrics,
  Tokenize,
  Detokenize,
  TokenizerInfo,
  Attention,
  Inspect,
  Asset
};

Route find_route(const std::string& method, const std::string& path) {
  if (method == "POST") {
    if (path == "/v1/completions") return Route::Completions;
    if (path == "/v1/chat/completions") return Route::Chat;
    if (path == "/v1/embeddings") return Route::Embeddings;
    if (path == "/tokenize") return Route::Tokenize;
    if (path == "/detokenize") return Route::Detokenize;
    if (path == "/v1/attention") return Route::Attention;
    if (path == "/v1/inspect") return Route::Inspect;
  } else if (method == "GET" || method == "HEAD") {
    if (path == "/v1/models") return Route::Models;
    if (path == "/health") return Route::Health;
    if (path == "/metrics") return Route::Metrics;
    if (path == "/tokenizer_info") return Route::TokenizerInfo;
    if (playground_asset(path)) return Route::Asset;
  }
  return Route::None;
}

// One request while its body arrives (the library's per-request pointer).
struct Pending {
  std::string method, path;
  Route route = Route::None;
  std::string body;
  size_t discarded = 0;             // body bytes dropped (refused, or past the limit)
  std::optional<ApiError> refusal;  // decided from the head; answered once the request is whole
};

// The headers of a request, as many times as each came.
struct HeaderScan {
  std::vector<std::string> content_length, transfer_encoding, host;
};

MHD_Result scan_header(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto& s = *static_cast<HeaderScan*>(cls);
  if (!key) return MHD_YES;
  const std::string v = value ? value : "";
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) s.content_length.push_back(v);
  if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) s.transfer_encoding.push_back(v);
  if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) s.host.push_back(v);
  return MHD_YES;
}

std::string header(MHD_Connection* c, const char* name) {
  const char* v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  return v ? v : "";
}

}  // namespace

struct Server::Impl {
  GPT& model;
  std::shared_ptr<const Tokenizer> tok;
  ServerOptions opt;
  Scheduler sched;
  MHD_Daemon* daemon = nullptr;
  bool loopback = false;  // bound to a loopback address: the Host header must name this machine
  std::atomic<bool> stopping{false};
  std::once_flag stopped;
  std::mutex run_mu;
  std::condition_variable run_cv;
  bool done = false;
  int64_t started =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();

  // Every open connection, for the request deadline: while a connection is receiving a request
  // (from when it opened or its last response was sent, until the request is whole), it has until
  // `deadline`; the watchdog shuts down the socket of one that misses it. The library closes it
  // then; the connection-closed notice removes it here before the descriptor is closed.
  struct Conn {
    int fd = -1;
    bool receiving = true;
    bool shut = false;
    Clock::time_point deadline;
  };
  std::mutex conns_mu;
  std::unordered_map<MHD_Connection*, Conn> conns;
  std::condition_variable watchdog_cv;
  bool watchdog_stop = false;
  std::thread watchdog;

  Impl(GPT& m, std::shared_ptr<const Tokenizer> t, ServerOptions o)
      : model(m), tok(t), opt(std::move(o)), sched(m, std::move(t), opt.parallel) {}

  const Tokenizer& tokenizer() const {
    if (!tok) throw_api(400, "", "the model directory has no vocabulary: text cannot be encoded");
    return *tok;
  }

  MHD_Result on_request(MHD_Connection* c, const char* url, const char* method, const char* upload,
                        size_t* upload_size, void** ctx);
  std::optional<ApiError> check_head(MHD_Connection* c, Pending& p, bool& close_now);
  Reply dispatch(MHD_Connection* c, Pending& p);
  Reply completions(MHD_Connection* c, const std::string& body, Endpoint ep);
  Reply embeddings(MHD_Connection* c, const std::string& body);
  std::string metrics_text() const;
  void set_receiving(MHD_Connection* c, bool receiving);
  void watch();

  // The library's callbacks.
  static MHD_Result on_request_cb(void* cls, MHD_Connection* c, const char* url, const char* method,
                                  const char* version, const char* upload, size_t* upload_size, void** ctx);
  static void on_completed_cb(void* cls, MHD_Connection* c, void** ctx, MHD_RequestTerminationCode);
  static void on_connection_cb(void* cls, MHD_Connection* c, void**, MHD_ConnectionNotificationCode code);
};

namespace {

MHD_Result queue_reply(MHD_Connection* c, Reply r) {
  MHD_Response* res;
  if (r.stream) {
    Stream* st = r.stream.get();
    res = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, &read_stream, st, &free_stream);
    if (!res) return MHD_NO;  // `r.stream` still owns the stream: its job is cancelled with it
    r.stream.release();
    MHD_add_response_header(res, "Cache-Control", "no-cache");
    r.content_type = "text/event-stream";
  } else {
    res = MHD_create_response_from_buffer(r.body.size(), r.body.data(), MHD_RESPMEM_MUST_COPY);
    if (!res) return MHD_NO;
  }
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  if (r.close) MHD_add_response_header(res, MHD_HTTP_HEADER_CONNECTION, "close");
  const MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), res);
  MHD_destroy_response(res);
  return ok;
}

}  // namespace

void Server::Impl::set_receiving(MHD_Connection* c, bool receiving) {
  std::lock_guard lk(conns_mu);
  auto it = conns.find(c);
  if (it == conns.end()) return;
  it->second.receiving = receiving;
  if (receiving) it->second.deadline = Clock::now() + std::chrono::seconds(opt.timeout);
}

void Server::Impl::watch() {
  const auto tick = std::chrono::milliseconds(std::clamp(opt.timeout * 1000 / 8, 50, 500));
  std::unique_lock lk(conns_mu);
  while (!watchdog_cv.wait_for(lk, tick, [&] { return watchdog_stop; })) {
    const auto now = Clock::now();
    for (auto& [conn, s] : conns)
      if (s.receiving && !s.shut && now > s.deadline) {
        ::shutdown(s.fd, SHUT_RDWR);  // the connection's thread sees the end and closes it
        s.shut = true;
      }
  }
}

// Checks what the head of a request alone decides: its framing, the Host and Origin headers, the
// route, the key and the declared size. `close_now`: the refusal goes out at once and the
// connection closes (the body, if any, is never read).
std::optional<ApiError> Server::Impl::check_head(MHD_Connection* c, Pending& p, bool& close_now) {
  HeaderScan h;
  MHD_get_connection_values(c, MHD_HEADER_KIND, &scan_header, &h);
  close_now = true;
  // Framing: one reading of where the body ends, or none. A proxy in front could read another and
  // take the rest for a second request (request smuggling).
  if (h.transfer_encoding.size() > 1) return api_error(400, "more than one Transfer-Encoding header");
  if (!h.transfer_encoding.empty() && !h.content_length.empty())
    return api_error(400, "both Transfer-Encoding and Content-Length: the length of the body is ambiguous");
  if (!h.transfer_encoding.empty() && strcasecmp(h.transfer_encoding[0].c_str(), "chunked") != 0)
    return api_error(501, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)",
                                      h.transfer_encoding[0].substr(0, 64)));
  for (const auto& v : h.content_length)
    if (v != h.content_length[0]) return api_error(400, "conflicting Content-Length headers");
  if (h.host.size() > 1) return api_error(400, "more than one Host header");
  uint64_t length = 0;
  if (!h.content_length.empty()) length = std::strtoull(h.content_length[0].c_str(), nullptr, 10);
  if (length > opt.max_body) {
    // Refused at once. A body of up to kDrain is read and dropped first (many clients send all
    // of it before they read); a longer one, or one the client waits to be asked for (Expect:
    // 100-continue), is never read: the connection closes.
    close_now = length > kDrain || !header(c, "Expect").empty();
    return too_large(opt.max_body);
  }
  // Other refusals read and drop the body, keeping the connection.
  close_now = false;

  // A page from another site must not reach a server on this machine: by a name it rebinds to
  // 127.0.0.1 (DNS rebinding), or by a form or a no-cors fetch that posts across origins without
  // asking first (browsers send those without a preflight, with an Origin header).
  if (loopback && !h.host.empty() && !loopback_host_allowed(h.host[0], {opt.host}))
    return api_error(
        403,
        fmt::format("the Host header '{}' does not name this server: a server bound to {} answers "
                    "only localhost and loopback addresses (DNS rebinding protection)",
                    h.host[0].substr(0, 100), opt.host),
        "host_not_allowed");
  const std::string origin = header(c, "Origin");
  if (p.method != "GET" && p.method != "HEAD" && !origin.empty() &&
      (h.host.empty() || !same_origin(origin, h.host[0])))
    return api_error(403,
                     fmt::format("cross-origin request refused: the Origin '{}' is not this server's",
                                 origin.substr(0, 100)),
                     "cross_origin");

  p.route = find_route(p.method, p.path);
  if (p.route == Route::None)
    return api_error(404, fmt::format("no route {} {}", p.method.substr(0, 16), p.path.substr(0, 200)));
  // The health check and the playground's static files are public; the API needs the key.
  const bool open = p.route == Route::Health || p.route == Route::Asset;
  if (!opt.api_key.empty() && !open && !bearer_matches(header(c, MHD_HTTP_HEADER_AUTHORIZATION), opt.api_key))
    return api_error(401, "Incorrect or missing API key: send \"Authorization: Bearer KEY\".",
                     "invalid_api_key");
  return std::nullopt;
}

MHD_Result Server::Impl::on_request(MHD_Connection* c, const char* url, const char* method,
                                    const char* upload, size_t* upload_size, void** ctx) {
  if (!*ctx) {  // the head is in: decide what can be decided now
    auto p = std::make_unique<Pending>();
    p->method = method ? method : "";
    p->path = url ? url : "";
    bool close_now = false;
    p->refusal = check_head(c, *p, close_now);
    Pending& pr = *p;
    *ctx = p.release();  // freed by the request-completed notice
    if (pr.refusal && close_now) {
      set_receiving(c, false);
      Reply r = error_reply(*pr.refusal);
      r.close = true;
      return queue_reply(c, std::move(r));
    }
    return MHD_YES;
  }
  Pending& p = *static_cast<Pending*>(*ctx);
  if (*upload_size > 0) {  // a piece of the body
    if (!p.refusal && p.discarded == 0 && p.body.size() + *upload_size <= opt.max_body) {
      p.body.append(upload, *upload_size);
    } else {
      // Refused, or over the limit (a chunked body has no length to check first): the rest is
      // read and dropped, so that the client, which may send it all before it reads, gets the
      // answer; past kDrain the connection closes instead.
      if (p.discarded == 0) std::string().swap(p.body);
      p.discarded += *upload_size;
      if (p.discarded > kDrain) return MHD_NO;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  // The request is whole.
  set_receiving(c, false);
  if (p.refusal) return queue_reply(c, error_reply(*p.refusal));
  if (p.discarded > 0) return queue_reply(c, error_reply(too_large(opt.max_body)));
  Reply r = dispatch(c, p);
  if (r.status == 0) return MHD_NO;  // the client left while its request ran
  return queue_reply(c, std::move(r));
}

Reply Server::Impl::dispatch(MHD_Connection* c, Pending& p) {
  switch (p.route) {
    case Route::Completions:
      return guarded([&] { return completions(c, p.body, Endpoint::Completions); });
    case Route::Chat:
      return guarded([&] { return completions(c, p.body, Endpoint::Chat); });
    case Route::Embeddings:
      return guarded([&] { return embeddings(c, p.body); });
    case Route::Models:
      return json_reply({{"object", "list"},
                         {"data", json::array({{{"id", opt.model_name},
                                                {"object", "model"},
                                                {"created", started},
                                                {"owned_by", "gpt.cpp"},
                                                {"context_length", model.config().n_ctx}}})}});
    case Route::Health:
      return json_reply({{"status", "ok"}});
    case Route::Metrics: {
      Reply r;
      r.body = metrics_text();
      r.content_type = "text/plain; version=0.0.4";
      return r;
    }
    case Route::Tokenize:
      return guarded([&] {
        const json j = json::parse(p.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw_api(400, "", "the body must be a JSON object");
        const char* key = j.contains("content") ? "content" : "prompt";
        if (!j.contains(key)) throw_api(400, "content", "'content' is required");
        if (!j[key].is_string()) throw_api(400, key, fmt::format("'{}' must be a string", key));
        const auto ids = tokenizer().encode(j[key].get<std::string>(), AllowedSpecial::everything(), 1);
        json pieces = json::array();
        for (TokenId id : ids) pieces.push_back(token_text(tokenizer(), id));
        return json_reply({{"tokens", ids}, {"pieces", pieces}});
      });
    case Route::Detokenize:
      return guarded([&] {
        const json j = json::parse(p.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw_api(400, "", "the body must be a JSON object");
        if (!j.contains("tokens") || !j["tokens"].is_array())
          throw_api(400, "tokens", "'tokens' must be an array");
        std::vector<TokenId> ids;
        const Tokenizer& tok = tokenizer();
        for (const auto& t : j["tokens"]) {
          if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
              t.get<int64_t>() >= static_cast<int64_t>(tok.vocab_size()))
            throw_api(400, "tokens", fmt::format("'tokens' must hold ids in [0, {})", tok.vocab_size()));
          ids.push_back(static_cast<TokenId>(t.get<int64_t>()));
        }
        const std::string text = sanitize_utf8(tok.decode(ids));
        return json_reply({{"content", text}, {"prompt", text}});  // llama.cpp's key, and vLLM's
      });
    case Route::TokenizerInfo:
      // vLLM's shape, which lm-evaluation-harness's remote tokenizer reads (with /tokenize and
      // /detokenize): GPT-2 has one special token, which begins and ends every text.
      return guarded([&] {
        const Tokenizer& tok = tokenizer();
        const std::optional<TokenId> eot = tok.eot_token();
        const json special = eot ? json(token_text(tok, *eot)) : json(nullptr);
        return json_reply({{"tokenizer_class", "GPT2Tokenizer"},
                           {"eos_token", special},
                           {"bos_token", special},
                           {"pad_token", nullptr},
                           {"vocab_size", tok.vocab_size()},
                           {"model_max_length", model.config().n_ctx}});
      });
    case Route::Attention:
      return guarded([&] {
        const json j = json::parse(p.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw_api(400, "", "the body must be a JSON object");
        // The model's weights are read-only: the connection's thread runs its own prefill on them, with
        // a decoder (and so a cache and activations) of its own.
        return json_reply(attention_response(model, tokenizer(), j));
      });
    case Route::Inspect:
      return guarded([&] {  // the logit-lens view: the same, a prefill of the connection's own
        const json j = json::parse(p.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw_api(400, "", "the body must be a JSON object");
        return json_reply(inspect_response(model, tokenizer(), j));
      });
    case Route::Asset: {
      // The playground page (serve/playground.h, embedded in the binary).
      const auto asset = playground_asset(p.path);
      Reply r;
      r.body = std::string(asset->first);
      r.content_type = std::string(asset->second);
      return r;
    }
    case Route::None:
      break;
  }
  return error_reply(api_error(404, "no route"));
}

Reply Server::Impl::completions(MHD_Connection* c, const std::string& body, Endpoint ep) {
  ApiLimits limits;
  limits.max_choices = opt.parallel;
  CompletionRequest r = parse_request(body, ep, limits);
  const Tokenizer* tok = &tokenizer();
  const ModelConfig& cfg = model.config();
  EngineRequest er;
  const char* input = ep == Endpoint::Chat ? "messages" : "prompt";
  if (ep == Endpoint::Chat) {
    require_eot(*tok);  // the chat template ends each turn with it, as `gpt chat` needs it
    er.prompts.push_back(chat_prompt_ids(*tok, r.messages));
  } else if (!r.prompt_texts.empty()) {
    for (const auto& t : r.prompt_texts)
      er.prompts.push_back(tok->encode(t, AllowedSpecial::everything(), 1));
  } else {
    for (const auto& ids : r.prompt_ids) {
      for (TokenId t : ids)
        if (t >= static_cast<TokenId>(cfg.vocab_size))
          throw_api(400, input,
                    fmt::format("token id {} is out of range for a vocabulary of {}", t, cfg.vocab_size));
      er.prompts.push_back(ids);
    }
  }
  for (const auto& [id, bias] : r.sampling.logit_bias)
    if (id >= static_cast<TokenId>(cfg.vocab_size))
      throw_api(400, "logit_bias", fmt::format("token id {} is out of range for a vocabulary of {}", id, cfg.vocab_size));
  size_t longest = 0;
  for (const auto& pr : er.prompts) longest = std::max(longest, std::max<size_t>(pr.size(), 1));
  // max_tokens 0 (scoring a prompt with echo) may fill the whole context; otherwise one token at
  // least must be left to generate.
  const bool nothing = r.max_tokens == 0;
  if (longest + (nothing ? 0 : 1) > static_cast<size_t>(cfg.n_ctx))
    throw_api(400, input,
              fmt::format("this model's maximum context length is {} tokens, but the {} has {}{}", cfg.n_ctx,
                          input, longest, nothing ? "" : " (at least one token must be left to generate)"));
  const int room = cfg.n_ctx - static_cast<int>(longest);
  int max_tokens = r.max_tokens.value_or(ep == Endpoint::Chat ? room : 16);
  if (!r.max_tokens) max_tokens = std::min(max_tokens, room);
  if (max_tokens > room)
    throw_api(
        400, "max_tokens",
        fmt::format("this model's maximum context length is {} tokens, but {} were asked ({} in the {}, {} "
                    "for the completion)",
                    cfg.n_ctx, longest + max_tokens, longest, input, max_tokens));
  er.n = r.n;
  er.max_tokens = max_tokens;
  er.sampling = r.sampling;
  er.stop = r.stop;
  er.logprobs = r.logprobs;
  er.echo = r.echo;
  if (stopping) throw api_error(503, "the server is shutting down");
  std::shared_ptr<Job> job;
  try {
    job = sched.submit(std::move(er));
  } catch (const Error& e) {
    if (stopping) throw api_error(503, "the server is shutting down");
    throw_api(400, "", e.what());
  }
  const ResponseMeta meta = make_meta(ep, r.model.empty() ? opt.model_name : r.model);
  if (!r.stream) {
    // Collects the choices, looking every kPoll whether the client is still there: one that left
    // frees its slots at the next token boundary.
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const int fd = info ? info->connect_fd : -1;
    std::vector<Choice> choices(job->choices());
    std::vector<Event> evs;
    int done = 0;
    for (bool more = true; more;) {
      evs.clear();
      more = job->wait(evs, kPoll);
      for (auto& ev : evs) done += add_event(choices, std::move(ev));
      if (more && client_gone(fd)) {
        job->cancel();
        Reply gone;
        gone.status = 0;
        return gone;
      }
    }
    if (job->cancelled() || done < job->choices()) throw api_error(503, "the server is shutting down");
    Usage u;
    u.prompt_tokens = job->prompt_tokens();
    for (const auto& ch : choices)
      for (const auto& t : ch.tokens) u.completion_tokens += !t.echoed;
    return json_reply(completion_response(r, meta, choices, u, *tok));
  }
  Reply reply;
  reply.stream = std::make_unique<Stream>();
  Stream& st = *reply.stream;
  st.req = std::move(r);
  st.meta = meta;
  st.job = job;
  st.tok = tok;
  st.offsets.assign(job->choices(), 0);
  return reply;
}

// /v1/embeddings: parsed and checked here (every refusal a 400 naming its field), then run by the
// scheduler's decode thread (Scheduler::submit_embedding says why there), waited for like a
// non-streamed completion: a client that leaves cancels it.
Reply Server::Impl::embeddings(MHD_Connection* c, const std::string& body) {
  const EmbeddingRequest r = parse_embedding_request(body);
  const ModelConfig& cfg = model.config();
  if (r.dimensions && *r.dimensions != cfg.n_embd)
    throw_api(400, "dimensions",
              fmt::format("this model's embeddings have {} dimensions; 'dimensions' {} cannot be served "
                          "(only the full width, or leave it out)",
                          cfg.n_embd, *r.dimensions));
  std::vector<std::vector<TokenId>> inputs;
  if (!r.texts.empty()) {
    const Tokenizer& tok = tokenizer();
    for (const auto& t : r.texts) inputs.push_back(tok.encode(t, AllowedSpecial::everything(), 1));
  } else {
    inputs = r.ids;
  }
  try {
    check_embed_inputs(cfg, inputs);
  } catch (const Error& e) {
    throw_api(400, "input", e.what());
  }
  EmbedOptions eo;
  eo.pooling = *parse_pooling(r.pooling);
  eo.normalize = r.normalize;
  if (stopping) throw api_error(503, "the server is shutting down");
  std::shared_ptr<EmbedJob> job;
  try {
    job = sched.submit_embedding(std::move(inputs), eo);
  } catch (const Error& e) {
    if (stopping) throw api_error(503, "the server is shutting down");
    throw_api(400, "input", e.what());
  }
  const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  const int fd = info ? info->connect_fd : -1;
  while (!job->wait(kPoll)) {
    if (client_gone(fd)) {
      job->cancel();
      Reply gone;
      gone.status = 0;
      return gone;
    }
  }
  if (!job->error().empty()) {
    if (stopping || job->cancelled()) throw api_error(503, "the server is shutting down");
    throw api_error(500, job->error());
  }
  return json_reply(embedding_response(r, r.model.empty() ? opt.model_name : r.model, job->vectors(),
                                       cfg.n_embd, job->tokens()));
}

std::string Server::Impl::metrics_text() const {
  const SchedulerMetrics m = sched.metrics();
  std::string s;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    s += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  auto histogram = [&](const char* name, const char* help, const SchedulerMetrics::Histogram& h) {
    s += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < SchedulerMetrics::kBuckets; b++) {
      cum += h.counts[b];
      s += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, SchedulerMetrics::kLatencyBuckets[b], cum);
    }
    s += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, h.count, name, h.sum,
                     name, h.count);
  };
  metric("gpt_requests_total", "counter", "Completion requests accepted.",
         static_cast<double>(m.requests_total));
  metric("gpt_requests_cancelled_total", "counter", "Requests whose client went away before the end.",
         static_cast<double>(m.requests_cancelled));
  metric("gpt_requests_active", "gauge", "Requests decoding now.", m.requests_active);
  metric("gpt_requests_queued", "gauge", "Requests waiting for free slots.", m.requests_queued);
  metric("gpt_slots", "gauge", "Decoder slots (--parallel).", m.slots);
  metric("gpt_slots_busy", "gauge", "Decoder slots in use.", m.slots_busy);
  metric("gpt_prompt_tokens_total", "counter", "Prompt tokens prefilled.",
         static_cast<double>(m.prompt_tokens));
  metric("gpt_generated_tokens_total", "counter", "Tokens generated.",
         static_cast<double>(m.generated_tokens));
  metric("gpt_decode_steps_total", "counter", "Batched decoder steps.", static_cast<double>(m.steps));
  metric("gpt_decode_step_rows_total", "counter",
         "Rows summed over decoder steps (mean batch = this / steps).", static_cast<double>(m.step_rows));
  metric("gpt_decode_seconds_total", "counter", "Seconds spent in decoder steps.", m.step_seconds);
  metric("gpt_prefill_seconds_total", "counter", "Seconds spent in prompt prefills.", m.prefill_seconds);
  metric("gpt_embedding_requests_total", "counter", "Embeddings requests accepted.",
         static_cast<double>(m.embed_requests));
  metric("gpt_embedding_inputs_total", "counter", "Inputs embedded.", static_cast<double>(m.embed_inputs));
  metric("gpt_embedding_tokens_total", "counter", "Tokens of the inputs embedded.",
         static_cast<double>(m.embed_tokens));
  metric("gpt_embedding_seconds_total", "counter", "Seconds spent in embedding forward passes.",
         m.embed_seconds);
  histogram("gpt_time_to_first_token_seconds", "From request to its first token.", m.ttft);
  histogram("gpt_request_duration_seconds", "From request to its last token.", m.latency);
  return s;
}

namespace {

bool is_loopback_address(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr) >> 24) == 127;
  if (a.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a).sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&in6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&in6) && in6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace

MHD_Result Server::Impl::on_request_cb(void* cls, MHD_Connection* c, const char* url, const char* method,
                                       const char*, const char* upload, size_t* upload_size, void** ctx) {
  try {
    return static_cast<Impl*>(cls)->on_request(c, url, method, upload, upload_size, ctx);
  } catch (...) {
    return MHD_NO;  // out of memory building a reply, ...: the connection closes, the server goes on
  }
}

// A request ended (answered, or its connection broke): its state goes, and the connection waits
// for the next one, against the deadline again.
void Server::Impl::on_completed_cb(void* cls, MHD_Connection* c, void** ctx, MHD_RequestTerminationCode) {
  delete static_cast<Pending*>(*ctx);
  *ctx = nullptr;
  static_cast<Impl*>(cls)->set_receiving(c, true);
}

void Server::Impl::on_connection_cb(void* cls, MHD_Connection* c, void**,
                                    MHD_ConnectionNotificationCode code) {
  auto& I = *static_cast<Impl*>(cls);
  std::lock_guard lk(I.conns_mu);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    Conn s;
    s.fd = info ? info->connect_fd : -1;
    s.deadline = Clock::now() + std::chrono::seconds(I.opt.timeout);
    I.conns[c] = s;
  } else {
    I.conns.erase(c);
  }
}

Server::Server(GPT& model, std::shared_ptr<const Tokenizer> tok, ServerOptions opt)
    : impl_(std::make_unique<Impl>(model, std::move(tok), std::move(opt))) {
  const ServerOptions& o = impl_->opt;
  if (o.timeout < 1) fail("the connection timeout must be at least 1 second");
  if (o.max_connections < 1 || o.max_connections_per_client < 1) fail("connection limits must be at least 1");
}

Server::~Server() { stop(); }

int Server::bind() {
  Impl& I = *impl_;
  if (I.daemon) fail("the server is already listening");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(I.opt.port);
  if (const int e = getaddrinfo(I.opt.host.c_str(), service.c_str(), &hints, &res); e != 0)
    fail("cannot listen on {}:{}: {}", I.opt.host, I.opt.port, gai_strerror(e));
  int fd = -1, err = 0, family = AF_INET;
  for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    // SO_REUSEADDR lets a restarted server bind at once; no SO_REUSEPORT, which would let a second
    // server share the port and the kernel split the connections between the two.
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0 &&
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0) {
      family = ai->ai_family;
      break;
    }
    err = errno;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    if (err == EADDRINUSE)
      fail("cannot listen on {}:{}: the address is already in use (another server on that port?)", I.opt.host,
           I.opt.port);
    fail("cannot listen on {}:{}: {}", I.opt.host, I.opt.port, std::strerror(err));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(addr).sin6_port
                                                    : reinterpret_cast<sockaddr_in&>(addr).sin_port);
  I.loopback = is_loopback_address(addr);

  // One thread per connection (a slow client holds only its own), a bounded memory pool for each
  // connection's head and buffers, the connection limits and the idle timeout; the request
  // deadline is the watchdog's.
  unsigned flags =
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
  if (family == AF_INET6) flags |= MHD_USE_IPv6;
  I.daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Impl::on_request_cb, &I, MHD_OPTION_LISTEN_SOCKET,
      static_cast<MHD_socket>(fd), MHD_OPTION_CONNECTION_MEMORY_LIMIT, I.opt.connection_memory,
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(I.opt.max_connections),
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, static_cast<unsigned>(I.opt.max_connections_per_client),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(I.opt.timeout), MHD_OPTION_NOTIFY_COMPLETED,
      &Impl::on_completed_cb, &I, MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection_cb, &I,
      MHD_OPTION_THREAD_STACK_SIZE, kThreadStack, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
  if (!I.daemon) {
    ::close(fd);
    fail("cannot start the HTTP server on {}:{} (out of threads or memory?)", I.opt.host, port);
  }
  I.watchdog = std::thread([&I] { I.watch(); });
  return port;
}

void Server::run() {
  Impl& I = *impl_;
  std::unique_lock lk(I.run_mu);
  I.run_cv.wait(lk, [&] { return I.done; });
}

void Server::stop() {
  Impl& I = *impl_;
  std::call_once(I.stopped, [&] {
    I.stopping = true;
    I.sched.stop();  // running requests end now, so the connection threads can finish
    if (I.daemon) {
      MHD_stop_daemon(I.daemon);  // closes the listener and every connection, joins their threads
      I.daemon = nullptr;
    }
    {
      std::lock_guard lk(I.conns_mu);
      I.watchdog_stop = true;
    }
    I.watchdog_cv.notify_all();
    if (I.watchdog.joinable()) I.watchdog.join();
    {
      std::lock_guard lk(I.run_mu);
      I.done = true;
    }
    I.run_cv.notify_all();
  });
}

}  // namespace gpt::serve
