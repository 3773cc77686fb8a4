// The continuous-batching engine of `gpt serve` (docs/serving.md). One decode thread owns a
// Decoder whose rows are the server's slots. At every token boundary it drops cancelled
// requests (freeing their slots), admits queued requests into free slots (a prefill each), then
// runs ONE decoder step over every active row: the weights are read once per step for all the
// requests in flight, which is why throughput grows with concurrency on a memory-bound decode.
// Each row samples with its own settings and random stream and streams its tokens to its Job.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "generate/decoder.h"
#include "generate/embed.h"
#include "generate/generator.h"
#include "serve/openai_api.h"

namespace gpt::serve {

// What the engine runs: each prompt n times (choice = prompt index * n + sample).
struct EngineRequest {
  std::vector<std::vector<TokenId>> prompts;  // an empty prompt starts from <|endoftext|>
  int n = 1;
  int max_tokens = 16;  // per choice, >= 0; prompt + max_tokens must fit the context
  SamplingSettings sampling;
  std::vector<std::string> stop;
  int logprobs = -1;  // -1: none; 0: the token's own; K: also the K most probable
  // Each choice starts with its prompt's tokens (ChoiceToken::echoed), scored like generated ones
  // when logprobs >= 0 (the first one has no score): a prompt's log-likelihood, as evaluation
  // harnesses ask for it.
  bool echo = false;
};

// One token of one choice, or its end (a choice of max_tokens 0 without echo ends with no token).
struct Event {
  int choice = 0;
  ChoiceToken token;
  bool has_token = true;
  bool last = false;
  std::string finish_reason;  // when last: "stop" (end-of-text or a stop string) or "length"
};

// Adds an event to its choice (text, tokens, finish reason); true when it was the choice's last.
bool add_event(std::vector<Choice>& choices, Event&& ev);

class Scheduler;

// A submitted request: the consumer's side. Thread-safe.
class Job {
 public:
  // Appends the events produced since the last call, waiting up to `timeout` for one. Returns
  // false once the job has ended and every event was taken.
  bool wait(std::vector<Event>& out, std::chrono::milliseconds timeout);
  // The client is gone: the engine frees the job's slots at the next token boundary (or drops it
  // from the queue) and produces no more events.
  void cancel();
  bool cancelled() const { return cancelled_.load(); }
  int choices() const { return choices_; }
  int prompt_tokens() const { return prompt_tokens_; }

 private:
  friend class Scheduler;
  Scheduler* owner_ = nullptr;
  EngineRequest req_;
  int choices_ = 0, prompt_tokens_ = 0, running_ = 0;
  std::chrono::steady_clock::time_point submitted_;
  bool first_token_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
};

// Collects a job to its end (a non-streamed request): the choices in order.
std::vector<Choice> collect(Job& job);

// An embeddings request (/v1/embeddings), the consumer's side. Thread-safe. The scheduler's decode
// thread runs it (see Scheduler::submit_embedding): its inputs, checked, and how to pool them.
class EmbedJob {
 public:
  // Waits up to `timeout` for the vectors; true once the job has ended (done, failed or cancelled).
  bool wait(std::chrono::milliseconds timeout);
  // The client is gone: the job leaves the queue, or stops at its next piece.
  void cancel();
  bool cancelled() const { return cancelled_.load(); }
  // Once ended: empty if all went well, else why not (the server stopping, an engine failure).
  const std::string& error() const { return error_; }
  // Once ended without an error: [inputs, n_embd], in the inputs' order.
  const std::vector<float>& vectors() const { return vectors_; }
  int tokens() const { return tokens_; }

 private:
  friend class Scheduler;
  Scheduler* owner_ = nullptr;
  std::vector<std::vector<TokenId>> inputs_;
  EmbedOptions opt_;
  size_t next_ = 0;  // inputs embedded so far (decode thread)
  int tokens_ = 0;
  std::vector<float> vectors_;
  std::string error_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
};

// /metrics figures, a consistent snapshot.
struct SchedulerMetrics {
  int slots = 0, slots_busy = 0, requests_active = 0, requests_queued = 0;
  uint64_t requests_total = 0, requests_cancelled = 0, prompt_tokens = 0, generated_tokens = 0;
  uint64_t steps = 0, step_rows = 0;  // decoder steps, and rows summed over them
  double step_seconds = 0, prefill_seconds = 0;
  // Time to first token and whole-request latency: Prometheus histograms over kLatencyBuckets.
  static constexpr double kLatencyBuckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  static constexpr int kBuckets = sizeof(kLatencyBuckets) / sizeof(double);
  struct Histogram {
    uint64_t counts[kBuckets + 1] = {};  // the last one: above every bucket
    uint64_t count = 0;
    double sum = 0;
    void add(double seconds);
  };
  Histogram ttft, latency;
  // /v1/embeddings: requests accepted, inputs and tokens embedded, seconds in their forward passes.
  uint64_t embed_requests = 0, embed_inputs = 0, embed_tokens = 0;
  double embed_seconds = 0;
};

class Scheduler {
 public:
  // `model` must outlive the scheduler; `slots` decoder rows run at once. `tok` (may be null)
  // turns tokens into text.
  Scheduler(GPT& model, std::shared_ptr<const Tokenizer> tok, int slots);
  ~Scheduler();  // stops the decode thread; unfinished jobs end as cancelled
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws gpt::Error when it can never run (more choices than slots, a token
  // outside the vocabulary, prompt + max_tokens beyond the context).
  std::shared_ptr<Job> submit(EngineRequest req);
  // Queues an embeddings request (generate/embed.h). Throws gpt::Error when an input can never run
  // (check_embed_inputs). The decode thread runs it between two decoder steps, in pieces of about
  // opt.batch_tokens tokens (one forward pass) per token boundary, so a big request delays the
  // running streams by one pass at a time, never by its whole length. Why that thread: the model's
  // hidden-state forward uses the model's one activation workspace and the engine's threads, both
  // the decoder's too; on that thread the passes never overlap a decoder step or each other.
  std::shared_ptr<EmbedJob> submit_embedding(std::vector<std::vector<TokenId>> inputs,
                                             const EmbedOptions& opt);
  // Ends the decode thread (running jobs end as cancelled); idempotent.
  void stop();

  int slots() const { return slots_; }
  const ModelConfig& config() const { return model_.config(); }
  SchedulerMetrics metrics() const;

 private:
  friend class Job;
  friend class EmbedJob;
  struct Seq;
  void loop();
  void step_once(const std::vector<std::shared_ptr<Job>>& admitted);
  void wake();
  void admit(const std::shared_ptr<Job>& job);
  std::vector<ChoiceToken> echo_prompt(int slot, const std::vector<TokenId>& prompt, int logprobs, bool prefill);
  void emit(Job& j, Event ev);
  void retire(size_t i);
  void embed_piece();
  static void end_embedding(EmbedJob& j, std::string error);

  GPT& model_;
  const int slots_;
  Decoder dec_;
  std::shared_ptr<const Tokenizer> tok_;
  std::optional<TokenId> eot_;

  mutable std::mutex mu_;  // guards queue_, embed_queue_, stop_, metrics_
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::deque<std::shared_ptr<EmbedJob>> embed_queue_;
  bool stop_ = false;
  SchedulerMetrics metrics_;

  // decode thread only
  std::vector<std::unique_ptr<Seq>> seqs_;
  std::vector<int> free_;
  std::vector<float> work_;
  std::vector<float> echo_logits_;  // [kEchoRows, V], made by the first echo that is scored
  std::vector<int> rows_;
  std::vector<TokenId> next_;
  std::thread thread_;
};

}  // namespace gpt::serve
