#include "serve/server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "generate/utf8_stream.h"
#include "serve/attention.h"
#include "serve/openai_api.h"
#include "serve/playground.h"
#include "serve/scheduler.h"

namespace gpt::serve {

using nlohmann::json;

struct Server::Impl {
  const PackedModel& model;
  ServerOptions opt;
  Scheduler sched;
  httplib::Server http;
  std::once_flag stopped;
  int64_t started =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();

  Impl(const PackedModel& m, ServerOptions o) : model(m), opt(std::move(o)), sched(m, opt.parallel) {}
  void routes();
  void completions(const httplib::Request& req, httplib::Response& res, Endpoint ep);
  std::string metrics_text() const;
  const Tokenizer& tokenizer() const {
    if (!model.tokenizer) throw_api(400, "", "the model directory has no vocabulary: text cannot be encoded");
    return *model.tokenizer;
  }
};

namespace {

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_json(e).dump(), "application/json");
}

void send_json(httplib::Response& res, const json& j) {
  res.status = 200;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// Runs a handler, turning every failure into an OpenAI error object: the server never dies of
// a request.
template <typename F>
void guarded(httplib::Response& res, F&& f) {
  try {
    f();
  } catch (const ApiError& e) {
    send_error(res, e);
  } catch (const Error& e) {
    ApiError a;
    a.message = e.what();
    send_error(res, a);
  } catch (const std::bad_alloc&) {
    ApiError a;
    a.status = 500;
    a.type = "server_error";
    a.message = "out of memory";
    send_error(res, a);
  } catch (const std::exception& e) {
    ApiError a;
    a.status = 500;
    a.type = "server_error";
    a.message = e.what();
    send_error(res, a);
  }
}

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

// The state of one streamed response, shared by the content provider's calls.
struct StreamState {
  CompletionRequest req;
  ResponseMeta meta;
  std::shared_ptr<Job> job;
  std::vector<size_t> offsets;  // text so far per choice (completions logprobs' text_offset)
  int completion_tokens = 0;
  bool started = false, finished = false;
};

}  // namespace

void Server::Impl::completions(const httplib::Request& hreq, httplib::Response& res, Endpoint ep) {
  ApiLimits limits;
  limits.max_choices = opt.parallel;
  CompletionRequest r = parse_request(hreq.body, ep, limits);
  const Tokenizer* tok = &tokenizer();
  const ModelConfig& cfg = model.config;
  EngineRequest er;
  const char* input = ep == Endpoint::Chat ? "messages" : "prompt";
  if (ep == Endpoint::Chat) {
    er.prompts.push_back(chat_prompt_ids(*tok, r.messages));
  } else if (!r.prompt_texts.empty()) {
    for (const auto& t : r.prompt_texts)
      er.prompts.push_back(tokenizer().encode(t, AllowedSpecial::everything(), 1));
  } else {
    for (const auto& ids : r.prompt_ids) {
      for (TokenId t : ids)
        if (t >= static_cast<TokenId>(cfg.vocab_size))
          throw_api(400, input,
                    fmt::format("token id {} is out of range for a vocabulary of {}", t, cfg.vocab_size));
      er.prompts.push_back(ids);
    }
  }
  size_t longest = 0;
  for (const auto& p : er.prompts) longest = std::max(longest, std::max<size_t>(p.size(), 1));
  if (longest >= static_cast<size_t>(cfg.n_ctx))
    throw_api(400, input,
              fmt::format("this model's maximum context length is {} tokens, but the {} has {} (at least one "
                          "token must be left to generate)",
                          cfg.n_ctx, input, longest));
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
  std::shared_ptr<Job> job;
  try {
    job = sched.submit(std::move(er));
  } catch (const Error& e) {
    throw_api(400, "", e.what());
  }
  const ResponseMeta meta = make_meta(ep, r.model.empty() ? opt.model_name : r.model);
  if (!r.stream) {
    const auto choices = collect(*job);
    Usage u;
    u.prompt_tokens = job->prompt_tokens();
    for (const auto& c : choices) u.completion_tokens += static_cast<int>(c.tokens.size());
    send_json(res, completion_response(r, meta, choices, u, *tok));
    return;
  }

  auto st = std::make_shared<StreamState>();
  st->req = std::move(r);
  st->meta = meta;
  st->job = job;
  st->offsets.assign(job->choices(), 0);
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [st, tok](size_t, httplib::DataSink& sink) {
        // A failed write or a closed connection means the client is gone: free its slots.
        auto put = [&](const json& j) {
          const std::string s = sse(j);
          if (!sink.write(s.data(), s.size())) {
            st->job->cancel();
            return false;
          }
          return true;
        };
        const bool chat = st->req.endpoint == Endpoint::Chat;
        if (!st->started) {
          st->started = true;
          if (chat)
            for (int i = 0; i < st->job->choices(); i++)
              if (!put(chat_role_chunk(st->meta, i))) return false;
        }
        std::vector<Event> evs;
        const bool more = st->job->wait(evs, std::chrono::milliseconds(200));
        if (!sink.is_writable()) {
          st->job->cancel();
          return false;
        }
        if (evs.empty() && more) {
          // Nothing yet (queued, or a long prefill): an SSE comment, which clients ignore, finds
          // out whether the client is still there.
          const char ping[] = ": waiting\n\n";
          if (!sink.write(ping, sizeof(ping) - 1)) {
            st->job->cancel();
            return false;
          }
          return true;
        }
        for (const auto& ev : evs) {
          st->completion_tokens++;
          const std::vector<ChoiceToken> toks{ev.token};
          size_t& off = st->offsets[ev.choice];
          if (chat) {
            if (!ev.token.text.empty() || st->req.logprobs >= 0)
              if (!put(chunk_response(st->req, st->meta, ev.choice, toks, ev.token.text, nullptr, off, *tok)))
                return false;
            if (ev.last &&
                !put(chunk_response(st->req, st->meta, ev.choice, {}, "", &ev.finish_reason, off, *tok)))
              return false;
          } else {
            if (!put(chunk_response(st->req, st->meta, ev.choice, toks, ev.token.text,
                                    ev.last ? &ev.finish_reason : nullptr, off, *tok)))
              return false;
          }
          off += ev.token.text.size();
        }
        if (!more) {
          if (st->job->cancelled()) return false;
          if (st->req.include_usage) {
            Usage u;
            u.prompt_tokens = st->job->prompt_tokens();
            u.completion_tokens = st->completion_tokens;
            if (!put(usage_chunk(st->req, st->meta, u))) return false;
          }
          const char done[] = "data: [DONE]\n\n";
          if (!sink.write(done, sizeof(done) - 1)) return false;
          st->finished = true;
          sink.done();
        }
        return true;
      },
      // Called when the response ends, also when the connection broke before the provider ran again.
      [st](bool success) {
        if (!success || !st->finished) st->job->cancel();
      });
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
  histogram("gpt_time_to_first_token_seconds", "From request to its first token.", m.ttft);
  histogram("gpt_request_duration_seconds", "From request to its last token.", m.latency);
  return s;
}

void Server::Impl::routes() {
  const std::string bearer = "Bearer " + opt.api_key;
  http.set_pre_routing_handler([this, bearer](const httplib::Request& req, httplib::Response& res) {
    // The health check and the playground's static files are public; the API needs the key.
    const bool open = req.path == "/health" || (req.method == "GET" && playground_asset(req.path));
    if (opt.api_key.empty() || open) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == bearer) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    e.status = 401;
    e.message = "Incorrect or missing API key: send \"Authorization: Bearer KEY\".";
    e.code = "invalid_api_key";
    send_error(res, e);
    return httplib::Server::HandlerResponse::Handled;
  });
  // The library's own refusals (unknown route, a body over the limit) as OpenAI error objects.
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        ApiError e;
        e.status = res.status;
        if (res.status == 413) {
          e.message = fmt::format("the request body is larger than the limit of {} bytes", opt.max_body);
        } else if (res.status == 404) {
          e.message = fmt::format("no route {} {}", req.method, req.path);
        } else {
          e.message = fmt::format("HTTP {}", res.status);
        }
        send_error(res, e);
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    ApiError e;
    e.status = 500;
    e.type = "server_error";
    e.message = "internal error";
    send_error(res, e);
  });

  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { completions(req, res, Endpoint::Completions); });
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { completions(req, res, Endpoint::Chat); });
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"object", "list"},
                    {"data", json::array({{{"id", opt.model_name},
                                           {"object", "model"},
                                           {"created", started},
                                           {"owned_by", "gpt.cpp"},
                                           {"context_length", model.config.n_ctx}}})}});
  });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"status", "ok"}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      const json j = json::parse(req.body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) throw_api(400, "", "the body must be a JSON object");
      const char* key = j.contains("content") ? "content" : "prompt";
      if (!j.contains(key)) throw_api(400, "content", "'content' is required");
      if (!j[key].is_string()) throw_api(400, key, fmt::format("'{}' must be a string", key));
      const auto ids = tokenizer().encode(j[key].get<std::string>(), AllowedSpecial::everything(), 1);
      json pieces = json::array();
      for (TokenId id : ids) pieces.push_back(token_text(tokenizer(), id));
      send_json(res, {{"tokens", ids}, {"pieces", pieces}});
    });
  });
  http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      const json j = json::parse(req.body, nullptr, false);
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
      send_json(res, {{"content", sanitize_utf8(tok.decode(ids))}});
    });
  });
  // The playground page (serve/playground.h, embedded in the binary) and its attention view.
  for (const char* path : {"/", "/index.html", "/app.js", "/style.css"})
    http.Get(path, [](const httplib::Request& req, httplib::Response& res) {
      const auto asset = playground_asset(req.path);
      if (!asset) return;  // the error handler answers 404
      res.set_content(std::string(asset->first), std::string(asset->second).c_str());
    });
  http.Post("/v1/attention", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      const json j = json::parse(req.body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) throw_api(400, "", "the body must be a JSON object");
      // PackedModel's weights are read-only: the HTTP thread runs its own prefill on them.
      send_json(res, attention_response(model, tokenizer(), j));
    });
  });
}

Server::Server(const PackedModel& model, ServerOptions opt)
    : impl_(std::make_unique<Impl>(model, std::move(opt))) {
  Impl& I = *impl_;
  const int threads = I.opt.http_threads > 0 ? I.opt.http_threads : std::max(64, 4 * I.opt.parallel + 16);
  I.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  I.http.set_payload_max_length(I.opt.max_body);
  I.routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  Impl& I = *impl_;
  int port = I.opt.port;
  if (port == 0) {
    port = I.http.bind_to_any_port(I.opt.host);
  } else if (!I.http.bind_to_port(I.opt.host, port)) {
    port = -1;
  }
  if (port <= 0) fail("cannot listen on {}:{}", I.opt.host, I.opt.port);
  return port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() {
  Impl& I = *impl_;
  std::call_once(I.stopped, [&] {
    I.sched.stop();  // running streams end now, so the HTTP workers can finish
    I.http.stop();
  });
}

}  // namespace gpt::serve
