// gpt serve: the OpenAI-compatible HTTP server with continuous batching (docs/serving.md).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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
  std::string model, weights, name, api_key, api_key_file;
  bool api_key_given = false;
  serve::ServerOptions opt;
  int threads = 0;
};

// The API key from --api-key, --api-key-file (its first line) or GPT_API_KEY, in that order; none:
// no key. An empty key would be no key at all: refused, whichever way it came.
std::string api_key(const ServeArgs& a) {
  std::string key, from;
  if (a.api_key_given) {
    key = a.api_key;
    from = "--api-key";
  } else if (!a.api_key_file.empty()) {
    std::ifstream f(a.api_key_file);
    if (!f) fail("cannot read the API key file {}", a.api_key_file);
    std::getline(f, key);
    from = "the API key file " + a.api_key_file;
  } else if (const char* env = std::getenv("GPT_API_KEY")) {
    key = env;
    from = "GPT_API_KEY";
  } else {
    return "";
  }
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) key.pop_back();
  if (key.empty()) fail("the API key from {} is empty: every request would pass without one", from);
  for (unsigned char c : key)
    if (c < 0x20 || c == 0x7f)
      fail("the API key from {} has a control character, which no header can carry", from);
  return key;
}

void run_serve(ServeArgs a) {
  a.opt.api_key = api_key(a);  // before the model loads: a bad key fails at once
  if (a.threads > 0) set_num_threads(a.threads);
  std::optional<ops::WeightType> type;
  if (!a.weights.empty()) type = ops::parse_weight_type(a.weights);
  const PackedModel model = load_packed_model(a.model, type, WeightCheck::Fail);
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
  const int port = server.bind();  // accepts from here on; "address already in use" and the like throw
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig != SIGUSR1) std::fprintf(stderr, "gpt serve: shutting down\n");
    server.stop();
  });
  const bool ipv6 = a.opt.host.find(':') != std::string::npos;
  std::fprintf(stderr, "listening on http://%s%s%s:%d\n", ipv6 ? "[" : "", a.opt.host.c_str(),
               ipv6 ? "]" : "", port);
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
  auto* key = c->add_option("--api-key", a->api_key,
                            "Require \"Authorization: Bearer KEY\" on every request (visible to `ps`: prefer "
                            "--api-key-file or the GPT_API_KEY environment variable)")
                  ->option_text("KEY");
  c->add_option("--api-key-file", a->api_key_file, "Read the API key from the first line of FILE")
      ->option_text("FILE")
      ->excludes(key);
  c->add_option("--model-name", a->name, "The model id the API reports (default: the directory's name)")
      ->option_text("NAME");
  c->add_option("--max-body", a->opt.max_body, "Largest request body in bytes (default 1 MiB; larger: 413)")
      ->option_text("BYTES")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30).description(""));
  c->add_option("--timeout", a->opt.timeout,
                "Seconds a request may take to arrive whole, and a silent connection stays open (default 30)")
      ->option_text("SECONDS")
      ->check(CLI::Range(1, 3600).description(""));
  c->add_option("--max-connections", a->opt.max_connections,
                "Connections open at once; more wait to be accepted (default 512)")
      ->option_text("N")
      ->check(CLI::Range(1, 65536).description(""));
  c->add_option("--max-connections-per-client", a->opt.max_connections_per_client,
                "Connections open at once from one IP address; more are closed (default 128)")
      ->option_text("N")
      ->check(CLI::Range(1, 65536).description(""));
  c->add_option("--weights", a->weights, "Convert the weights on load: f32, bf16 or q8 (default: as stored)")
      ->option_text("TYPE");
  c->add_option("--threads", a->threads, "Threads of the decoder (default: all cores)")
      ->option_text("N")
      ->check(CLI::Range(0, 4096).description(""));
  c->callback([a, key] {
    a->api_key_given = key->count() > 0;
    run_serve(*a);
  });
}

}  // namespace gpt::cli
