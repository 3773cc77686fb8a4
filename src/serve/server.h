// `gpt serve`: the OpenAI-compatible HTTP server (docs/serving.md). Routes, Bearer auth, the body
// size limit, server-sent-event streaming, /metrics; the requests run on a Scheduler
// (serve/scheduler.h). The limits that keep it up under attack are here too (docs/serving.md,
// "Limits and hardening"). The HTTP library (GNU libmicrohttpd) stays inside server.cpp.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "model/gpt.h"
#include "tokenizer/tokenizer.h"

namespace gpt::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port
  int parallel = 4;                // decoder slots
  std::string api_key;             // non-empty: requests need "Authorization: Bearer KEY"
  std::string model_name = "gpt";  // what /v1/models lists and responses name
  size_t max_body = 1 << 20;       // larger bodies get 413
  // A request must arrive whole within `timeout` seconds of the connection being ready for it, and
  // a connection that sends and takes nothing for that long is closed.
  int timeout = 30;
  int max_connections = 512;             // in total; more wait in the listen queue
  int max_connections_per_client = 128;  // from one IP address; more are closed at once
  // Memory per connection for the request line, the headers and the I/O buffers: a longer
  // request line gets 414, longer or more headers 431.
  size_t connection_memory = 64 << 10;
};

class Server {
 public:
  // `model` must outlive the server; it runs on its own backend (`gpt serve --device`). `tok` (may
  // be null: then only token ids are served) encodes and decodes text.
  Server(GPT& model, std::shared_ptr<const Tokenizer> tok, ServerOptions opt);
  ~Server();
  // Binds the socket and starts accepting connections; returns the port (the chosen one for port
  // 0). Throws gpt::Error on failure ("address already in use", ...).
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
