// gpt serve: the OpenAI-compatible HTTP server with continuous batching (docs/serving.md).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "model/packed_model.h"
#include "serve/server.h"

namespace gpt::cli {
namespace {

struct ServeArgs {
  std::string model, weights, name;
  serve::ServerOptions opt;
  int threads = 0;
};

void run_serve(ServeArgs a) {
  if (a.threads > 0) set_num_threads(a.threads);
  std::optional<ops::WeightType> type;
  if (!a.weights.empty()) type = ops::parse_weight_type(a.weights);
  const PackedModel model = load_packed_model(a.model, type);
  if (!model.tokenizer) fail("{} has no vocabulary: the server needs one to read and write text", a.model);
  a.opt.model_name =
      a.name.empty() ? std::filesystem::path(a.model).lexically_normal().filename().string() : a.name;
  if (a.opt.model_name.empty()) a.opt.model_name = "gpt";

  // SIGINT and SIGTERM are taken by one thread (sigwait), blocked everywhere else: the threads
  // started below inherit the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);  // our own wake-up when the server ends otherwise
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not death

  serve::Server server(model, a.opt);
  const int port = server.bind();
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig != SIGUSR1) std::fprintf(stderr, "gpt serve: shutting down\n");
    server.stop();
  });
  std::fprintf(stderr, "listening on http://%s:%d\n", a.opt.host.c_str(), port);
  std::fflush(stderr);
  server.run();
  pthread_kill(watcher.native_handle(), SIGUSR1);
  watcher.join();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* c = app.add_subcommand(
      "serve", "Serve a model over HTTP: an OpenAI-compatible API with continuous batching");
  c->add_option("--model,-m", a->model, "Model directory (plain or quantized)")
      ->option_text("DIR")
      ->required();
  c->add_option("--host", a->opt.host, "Address to bind (default 127.0.0.1: this machine only)")
      ->option_text("HOST");
  c->add_option("--port", a->opt.port, "Port (default 8080; 0 = any free port, printed)")
      ->option_text("PORT")
      ->check(CLI::Range(0, 65535).description(""));
  c->add_option("--parallel", a->opt.parallel,
                "Decoder slots: requests (choices) decoded at once; more wait in a queue (default 4)")
      ->option_text("N")
      ->check(CLI::Range(1, 1024).description(""));
  c->add_option("--api-key", a->opt.api_key, "Require \"Authorization: Bearer KEY\" on every request")
      ->option_text("KEY");
  c->add_option("--model-name", a->name, "The model id the API reports (default: the directory's name)")
      ->option_text("NAME");
  c->add_option("--max-body", a->opt.max_body, "Largest request body in bytes (default 1 MiB; larger: 413)")
      ->option_text("BYTES")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30).description(""));
  c->add_option("--weights", a->weights, "Convert the weights on load: f32, bf16 or q8 (default: as stored)")
      ->option_text("TYPE");
  c->add_option("--threads", a->threads, "Threads of the decoder (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a] { run_serve(*a); });
}

}  // namespace gpt::cli
