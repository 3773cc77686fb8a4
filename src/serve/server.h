// `gpt serve`: the OpenAI-compatible HTTP server (docs/serving.md). Routes, Bearer auth, the body
// size limit, server-sent-event streaming, /metrics; the requests run on a Scheduler
// (serve/scheduler.h). The HTTP library stays inside server.cpp.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "model/packed_model.h"

namespace gpt::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port
  int parallel = 4;                // decoder slots
  std::string api_key;             // non-empty: requests need "Authorization: Bearer KEY"
  std::string model_name = "gpt";  // what /v1/models lists and responses name
  size_t max_body = 1 << 20;       // larger bodies get 413
  int http_threads = 0;            // 0: enough for many concurrent streams
};

class Server {
 public:
  // `model` must outlive the server.
  Server(const PackedModel& model, ServerOptions opt);
  ~Server();
  // Binds the socket; returns the port (the chosen one for port 0). Throws gpt::Error on failure.
  int bind();
  // Serves until stop() (from another thread or a signal handler thread).
  void run();
  // Ends running requests and the listener; idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpt::serve
