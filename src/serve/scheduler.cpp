#include "serve/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "generate/sampling.h"
#include "generate/utf8_stream.h"

namespace gpt::serve {

using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

void SchedulerMetrics::Histogram::add(double s) {
  int b = 0;
  while (b < kBuckets && s > kLatencyBuckets[b]) b++;
  counts[b]++;
  count++;
  sum += s;
}

// ---- Job -------------------------------------------------------------------------------------------

bool Job::wait(std::vector<Event>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !events_.empty() || done_; });
  while (!events_.empty()) {
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return !done_;
}

void Job::cancel() {
  if (cancelled_.exchange(true)) return;
  if (owner_) owner_->wake();
}

bool add_event(std::vector<Choice>& choices, Event&& ev) {
  Choice& c = choices.at(static_cast<size_t>(ev.choice));
  if (ev.has_token) {
    c.text += ev.token.text;
    c.tokens.push_back(std::move(ev.token));
  }
  if (ev.last) c.finish_reason = ev.finish_reason;
  return ev.last;
}

std::vector<Choice> collect(Job& job) {
  std::vector<Choice> choices(job.choices());
  std::vector<Event> evs;
  for (bool more = true; more;) {
    evs.clear();
    more = job.wait(evs, std::chrono::milliseconds(1000));
    for (auto& ev : evs) add_event(choices, std::move(ev));
  }
  return choices;
}

// ---- EmbedJob --------------------------------------------------------------------------------------

bool EmbedJob::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return done_; });
}

void EmbedJob::cancel() {
  if (cancelled_.exchange(true)) return;
  if (owner_) owner_->wake();
}

// ---- the engine ------------------------------------------------------------------------------------

// One choice of a running job, in one decoder row.
struct Scheduler::Seq {
  std::shared_ptr<Job> job;
  int choice, slot;
  std::vector<TokenId> context;  // prompt + generated (the repetition penalty reads it)
  Sampler sampler;
  TextAssembler text;
  int generated = 0;
  Seq(std::shared_ptr<Job> j, int c, int s, const std::vector<TokenId>& prompt, const SamplingSettings& ss,
      std::shared_ptr<const Tokenizer> tok)
      : job(std::move(j)),
        choice(c),
        slot(s),
        context(prompt),
        sampler(ss),
        text(std::move(tok), &job->req_.stop) {}
};

Scheduler::Scheduler(GPT& model, std::shared_ptr<const Tokenizer> tok, int slots)
    : model_(model), slots_(slots), dec_(model, std::max(slots, 1)), tok_(std::move(tok)) {
  if (slots < 1) fail("--parallel must be >= 1, got {}", slots);
  if (tok_) eot_ = tok_->eot_token();
  metrics_.slots = slots;
  for (int s = slots - 1; s >= 0; s--) free_.push_back(s);
  work_.resize(model.config().vocab_size);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Whatever did not finish ends now, so no consumer waits forever.
  auto end = [](Job& j) {
    std::lock_guard lk(j.mu_);
    j.done_ = true;
    j.cv_.notify_all();
  };
  for (auto& s : seqs_) end(*s->job);
  seqs_.clear();
  std::lock_guard lk(mu_);
  for (auto& j : queue_) end(*j);
  queue_.clear();
  for (auto& j : embed_queue_) end_embedding(*j, "the server is shutting down");
  embed_queue_.clear();
}

void Scheduler::wake() {
  { std::lock_guard lk(mu_); }
  cv_.notify_all();
}

std::shared_ptr<Job> Scheduler::submit(EngineRequest req) {
  const ModelConfig& cfg = model_.config();
  if (req.n < 1 || req.prompts.empty()) fail("a request needs at least one prompt and n >= 1");
  const size_t choices = req.prompts.size() * static_cast<size_t>(req.n);
  if (choices > static_cast<size_t>(slots_))
    fail("{} choices asked, more than the server's {} slots", choices, slots_);
  if (req.max_tokens < 0) fail("max_tokens must be >= 0, got {}", req.max_tokens);
  req.sampling.validate();
  if (!req.stop.empty() && !tok_) fail("stop strings need a vocabulary");
  int prompt_tokens = 0;
  for (auto& p : req.prompts) {
    if (p.empty()) {
      if (!eot_) fail("the prompt is empty and the vocabulary has no end-of-text token to start from");
      p.push_back(*eot_);
    }
    for (TokenId t : p)
      if (t >= static_cast<TokenId>(cfg.vocab_size))
        fail("token id {} is out of range for a vocabulary of {}", t, cfg.vocab_size);
    if (p.size() + static_cast<size_t>(req.max_tokens) > static_cast<size_t>(cfg.n_ctx))
      fail(
          "this model's maximum context length is {} tokens, but {} were asked ({} in the prompt, {} for the "
          "completion)",
          cfg.n_ctx, p.size() + req.max_tokens, p.size(), req.max_tokens);
    prompt_tokens += static_cast<int>(p.size());
  }
  auto job = std::make_shared<Job>();
  job->owner_ = this;
  job->choices_ = static_cast<int>(choices);
  job->prompt_tokens_ = prompt_tokens;
  job->req_ = std::move(req);
  job->submitted_ = Clock::now();
  {
    std::lock_guard lk(mu_);
    if (stop_) fail("the server is shutting down");
    queue_.push_back(job);
    metrics_.requests_total++;
    metrics_.requests_queued = static_cast<int>(queue_.size());
  }
  cv_.notify_all();
  return job;
}

std::shared_ptr<EmbedJob> Scheduler::submit_embedding(std::vector<std::vector<TokenId>> inputs,
                                                      const EmbedOptions& opt) {
  if (inputs.empty()) fail("an embeddings request needs at least one input");
  check_embed_inputs(model_.config(), inputs);
  auto job = std::make_shared<EmbedJob>();
  job->owner_ = this;
  for (const auto& in : inputs) job->tokens_ += static_cast<int>(in.size());
  job->inputs_ = std::move(inputs);
  job->opt_ = opt;
  job->vectors_.resize(job->inputs_.size() * static_cast<size_t>(model_.config().n_embd));
  {
    std::lock_guard lk(mu_);
    if (stop_) fail("the server is shutting down");
    embed_queue_.push_back(job);
    metrics_.embed_requests++;
  }
  cv_.notify_all();
  return job;
}

void Scheduler::end_embedding(EmbedJob& j, std::string error) {
  {
    std::lock_guard lk(j.mu_);
    j.error_ = std::move(error);
    j.done_ = true;
  }
  j.cv_.notify_all();
}

// One piece of the first queued embeddings request: its next inputs, about one forward pass
// (opt.batch_tokens tokens, at least one input). Decode thread only, between two decoder steps.
void Scheduler::embed_piece() {
  std::shared_ptr<EmbedJob> job;
  {
    std::lock_guard lk(mu_);
    if (embed_queue_.empty()) return;
    job = embed_queue_.front();
  }
  EmbedJob& j = *job;
  const size_t n = j.inputs_.size(), i0 = j.next_;
  size_t i1 = i0, tokens = 0;
  while (i1 < n && (i1 == i0 || tokens + j.inputs_[i1].size() <= j.opt_.batch_tokens))
    tokens += j.inputs_[i1++].size();
  const auto t0 = Clock::now();
  std::string error;
  try {
    const std::vector<float> v =
        embed(model_, std::span<const std::vector<TokenId>>(j.inputs_).subspan(i0, i1 - i0), j.opt_);
    std::copy(v.begin(), v.end(),
              j.vectors_.begin() + static_cast<std::ptrdiff_t>(i0 * model_.config().n_embd));
    j.next_ = i1;
  } catch (const std::exception& e) {
    // The inputs were checked when submitted: nothing a request does should get here.
    std::fprintf(stderr, "gpt serve: error: %s\n", e.what());
    error = e.what();
  }
  const bool ended = !error.empty() || j.next_ == n;
  {
    std::lock_guard lk(mu_);
    metrics_.embed_seconds += seconds_since(t0);
    if (error.empty()) {
      metrics_.embed_inputs += i1 - i0;
      metrics_.embed_tokens += tokens;
    }
    if (ended) embed_queue_.pop_front();
  }
  if (ended) end_embedding(j, std::move(error));
}

SchedulerMetrics Scheduler::metrics() const {
  std::lock_guard lk(mu_);
  return metrics_;
}

void Scheduler::emit(Job& j, Event ev) {
  bool done;
  {
    std::lock_guard lk(j.mu_);
    done = ev.last && j.running_ == 1;
  }
  {
    // The figures first, so a consumer that sees its job end also sees it counted.
    std::lock_guard lk(mu_);
    if (!j.first_token_) {
      j.first_token_ = true;
      metrics_.ttft.add(seconds_since(j.submitted_));
    }
    if (done) {
      metrics_.latency.add(seconds_since(j.submitted_));
      metrics_.requests_active--;
    }
  }
  {
    std::lock_guard lk(j.mu_);
    if (ev.last) j.running_--;
    j.events_.push_back(std::move(ev));
    if (done) j.done_ = true;
  }
  j.cv_.notify_all();
}

// Frees seqs_[i]'s slot and removes it (the order of the others does not matter).
void Scheduler::retire(size_t i) {
  free_.push_back(seqs_[i]->slot);
  seqs_[i] = std::move(seqs_.back());
  seqs_.pop_back();
  std::lock_guard lk(mu_);
  metrics_.slots_busy = slots_ - static_cast<int>(free_.size());
}

// Positions scored per pass when echo asks for a prompt's logprobs: bounds the host logits to
// kEchoRows * V floats whatever the prompt's length.
constexpr int kEchoRows = 64;

// The prompt's tokens as `echo` sends them back: their text, and with logprobs >= 0 the score of
// each (but the first) given the tokens before it, from one prefill of `slot` when `prefill`.
std::vector<ChoiceToken> Scheduler::echo_prompt(int slot, const std::vector<TokenId>& prompt, int logprobs,
                                                bool prefill) {
  std::vector<ChoiceToken> out(prompt.size());
  Utf8Stream utf8;
  for (size_t i = 0; i < prompt.size(); i++) {
    out[i].id = prompt[i];
    out[i].echoed = true;
    if (tok_) utf8.push(tok_->token_bytes(prompt[i]), out[i].text);
  }
  if (!out.empty()) utf8.finish(out.back().text);
  if (logprobs < 0) {
    if (prefill) dec_.prefill(slot, prompt);
    return out;
  }
  out[0].scored = false;
  const int V = decodable_vocab(model_.config(), tok_.get());
  const size_t Vm = static_cast<size_t>(model_.config().vocab_size);
  echo_logits_.resize(kEchoRows * Vm);
  Decoder::PositionLogits sink;
  sink.buf = echo_logits_.data();
  sink.rows = kEchoRows;
  sink.each = [&](int t0, int n, const float* logits) {
    for (int i = 0; i < n; i++) {
      const size_t next = static_cast<size_t>(t0 + i) + 1;  // the token these logits predict
      if (next >= prompt.size()) break;
      const std::span<const float> lg(logits + i * Vm, V);
      out[next].logprob = token_logprob(lg, prompt[next]);
      if (logprobs > 0) out[next].top = top_logprobs(lg, logprobs);
    }
  };
  dec_.prefill(slot, prompt, sink);
  return out;
}

void Scheduler::admit(const std::shared_ptr<Job>& job) {
  const EngineRequest& r = job->req_;
  job->running_ = job->choices_;
  {
    std::lock_guard lk(mu_);
    metrics_.prompt_tokens += static_cast<uint64_t>(job->prompt_tokens_);
    metrics_.requests_active++;
  }
  const auto t0 = Clock::now();
  int choice = 0;
  for (const auto& prompt : r.prompts) {
    // max_tokens 0: nothing to generate. The prompt is scored (echo with logprobs) in a free
    // slot that is free again at once, and each choice ends with its echo (or with no token).
    if (r.max_tokens == 0) {
      const bool score = r.echo && r.logprobs >= 0;
      const std::vector<ChoiceToken> echo =
          r.echo ? echo_prompt(free_.back(), prompt, r.logprobs, score) : std::vector<ChoiceToken>{};
      for (int k = 0; k < r.n; k++, choice++) {
        for (size_t i = 0; i < echo.size(); i++) {
          Event ev;
          ev.choice = choice;
          ev.token = echo[i];
          ev.last = i + 1 == echo.size();
          if (ev.last) ev.finish_reason = "length";
          emit(*job, std::move(ev));
        }
        if (echo.empty()) {
          Event ev;
          ev.choice = choice;
          ev.has_token = false;
          ev.last = true;
          ev.finish_reason = "length";
          emit(*job, std::move(ev));
        }
      }
      continue;
    }
    int first = -1;
    std::vector<ChoiceToken> echo;
    for (int k = 0; k < r.n; k++, choice++) {
      const int slot = free_.back();
      free_.pop_back();
      // The prompt runs once; the other samples of it copy its row.
      if (first < 0) {
        if (r.echo) {
          echo = echo_prompt(slot, prompt, r.logprobs, true);
        } else {
          dec_.prefill(slot, prompt);
        }
        first = slot;
      } else {
        dec_.copy_row(slot, first);
      }
      for (const ChoiceToken& t : echo) {
        Event ev;
        ev.choice = choice;
        ev.token = t;
        emit(*job, std::move(ev));
      }
      SamplingSettings ss = r.sampling;
      ss.seed = sample_seed(r.sampling.seed, choice);
      seqs_.push_back(std::make_unique<Seq>(job, choice, slot, prompt, ss, tok_));
    }
  }
  std::lock_guard lk(mu_);
  metrics_.prefill_seconds += seconds_since(t0);
  metrics_.slots_busy = slots_ - static_cast<int>(free_.size());
}

void Scheduler::loop() {
  std::vector<std::shared_ptr<Job>> admitted;
  for (;;) {
    admitted.clear();
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !seqs_.empty() || !queue_.empty() || !embed_queue_.empty(); });
      if (stop_) return;
      // Cancelled jobs leave the queue; the head is admitted while its choices fit (first come,
      // first served: a big request is not overtaken forever by small ones).
      std::erase_if(queue_, [&](const std::shared_ptr<Job>& j) {
        if (!j->cancelled()) return false;
        metrics_.requests_cancelled++;
        std::lock_guard jl(j->mu_);
        j->done_ = true;
        j->cv_.notify_all();
        return true;
      });
      std::erase_if(embed_queue_, [&](const std::shared_ptr<EmbedJob>& j) {
        if (!j->cancelled()) return false;
        metrics_.requests_cancelled++;
        end_embedding(*j, "cancelled");
        return true;
      });
      size_t free_after_cancel = free_.size();
      for (const auto& s : seqs_)
        if (s->job->cancelled()) free_after_cancel++;
      while (!queue_.empty() && static_cast<size_t>(queue_.front()->choices_) <= free_after_cancel) {
        free_after_cancel -= queue_.front()->choices_;
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.requests_queued = static_cast<int>(queue_.size());
    }
    // An embeddings request runs a piece at a token boundary, between two decoder steps.
    embed_piece();
    try {
      step_once(admitted);
    } catch (const std::exception& e) {
      // Nothing a request does should get here; if something does, its requests end with an
      // error and the server goes on.
      std::fprintf(stderr, "gpt serve: error: %s\n", e.what());
      while (!seqs_.empty()) {
        const std::shared_ptr<Job> job = seqs_.back()->job;
        Event ev;
        ev.choice = seqs_.back()->choice;
        ev.last = true;
        ev.finish_reason = "error";
        retire(seqs_.size() - 1);
        emit(*job, std::move(ev));
      }
      for (const auto& j : admitted) {  // admitted only in part, or not at all
        std::lock_guard jl(j->mu_);
        j->done_ = true;
        j->cv_.notify_all();
      }
    }
  }
}

// One token boundary: cancelled rows leave, admitted jobs prefill, every row samples a token,
// and the rows that go on run one decoder step together.
void Scheduler::step_once(const std::vector<std::shared_ptr<Job>>& admitted) {
  // Only tokens the vocabulary can turn into text are candidates: a model may have more rows
  // than its vocabulary (a small character vocabulary in a model of GPT-2's width).
  const int V = decodable_vocab(model_.config(), tok_.get());
  std::vector<int>& rows = rows_;
  std::vector<TokenId>& next = next_;
  // A client that has gone frees its slots now.
  for (size_t i = seqs_.size(); i-- > 0;) {
    if (!seqs_[i]->job->cancelled()) continue;
    const std::shared_ptr<Job> job = seqs_[i]->job;
    retire(i);
    bool last;
    {
      std::lock_guard jl(job->mu_);
      last = job->running_ == 1;
    }
    if (last) {
      std::lock_guard lk(mu_);
      metrics_.requests_cancelled++;
      metrics_.requests_active--;
    }
    {
      std::lock_guard jl(job->mu_);
      job->running_--;
      if (last) job->done_ = true;
    }
    job->cv_.notify_all();
  }
  for (const auto& j : admitted) admit(j);

  // Sample every row's next token; the rows that go on take one decoder step together.
  rows.clear();
  next.clear();
  uint64_t emitted = 0;
  for (size_t i = 0; i < seqs_.size();) {
    Seq& s = *seqs_[i];
    const EngineRequest& r = s.job->req_;
    const float* lg = dec_.logits(s.slot);
    const std::span<const float> own(lg, V);
    std::memcpy(work_.data(), lg, V * sizeof(float));
    const TokenId id = s.sampler.sample(std::span<float>(work_.data(), V), s.context,
                                        s.context.size() - static_cast<size_t>(s.generated));
    s.context.push_back(id);
    s.generated++;
    emitted++;
    Event ev;
    ev.token.id = id;
    if (r.logprobs >= 0) ev.token.logprob = token_logprob(own, id);
    if (r.logprobs > 0) ev.token.top = top_logprobs(own, r.logprobs);
    if (eot_ && id == *eot_) {
      ev.token.text = s.text.finish();
      ev.last = true;
      ev.finish_reason = "stop";
    } else {
      ev.token.text = s.text.add(id);
      if (s.text.stopped()) {
        ev.last = true;
        ev.finish_reason = "stop";
      } else if (s.generated >= r.max_tokens) {
        ev.token.text += s.text.finish();
        ev.last = true;
        ev.finish_reason = "length";
      }
    }
    ev.choice = s.choice;
    if (ev.last) {
      const std::shared_ptr<Job> job = s.job;
      retire(i);  // the slot is free before the consumer hears of the end
      emit(*job, std::move(ev));
      continue;
    }
    emit(*s.job, std::move(ev));
    rows.push_back(s.slot);
    next.push_back(id);
    i++;
  }
  const auto t0 = Clock::now();
  if (!rows.empty()) dec_.step(rows, next);
  std::lock_guard lk(mu_);
  metrics_.generated_tokens += emitted;
  if (!rows.empty()) {
    metrics_.steps++;
    metrics_.step_rows += rows.size();
    metrics_.step_seconds += seconds_since(t0);
  }
}

}  // namespace gpt::serve
