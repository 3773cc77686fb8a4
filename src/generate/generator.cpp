#include "generate/generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "generate/beam.h"

namespace gpt {

void GenerateSettings::validate() const {
  if (max_new_tokens < 0) fail("max-new-tokens must be >= 0, got {}", max_new_tokens);
  if (num_samples < 1) fail("num-samples must be >= 1, got {}", num_samples);
  if (beams < 0) fail("beam width must be >= 1, got {}", beams);
  if (show_probs < 0) fail("show-probs must be >= 0, got {}", show_probs);
  for (const auto& s : stop)
    if (s.empty()) fail("a stop string must not be empty");
  sampling.validate();
  if (beams > 0) {
    if (num_samples > beams)
      fail("beam search returns at most --beam hypotheses: --num-samples {} > --beam {}", num_samples, beams);
    if (show_probs > 0) fail("--show-probs is not available with beam search");
    if (!std::isfinite(length_penalty)) fail("length penalty must be finite");
  }
}

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::EndOfText:
      return "eot";
    case FinishReason::Stop:
      return "stop";
    default:
      return "length";
  }
}

// ---- text ------------------------------------------------------------------------------------------

TextAssembler::TextAssembler(std::shared_ptr<const Tokenizer> tok, const std::vector<std::string>* stop)
    : tok_(std::move(tok)), stop_(stop) {}

std::string_view TextAssembler::emit(bool final) {
  out_.clear();
  if (stopped_) return out_;
  // The earliest stop string anywhere in the held text ends the sample. Emitted text never holds
  // the start of a match (see below), so this search cannot miss one.
  size_t cut = std::string::npos;
  if (stop_)
    for (const auto& s : *stop_) cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    out_.assign(pending_, 0, cut);
    pending_.clear();
    stopped_ = true;
  } else {
    // Hold back the longest suffix that is a proper prefix of some stop string. Stop strings are
    // valid UTF-8, so the cut falls between characters.
    size_t hold = 0;
    if (stop_ && !final)
      for (const auto& s : *stop_)
        for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; k--)
          if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
            hold = k;
            break;
          }
    out_.assign(pending_, 0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
  }
  text_ += out_;
  return out_;
}

std::string_view TextAssembler::add(TokenId id) {
  if (stopped_) {
    out_.clear();
    return out_;
  }
  if (tok_) utf8_.push(tok_->token_bytes(id), pending_);
  return emit(false);
}

std::string_view TextAssembler::finish() {
  if (stopped_) {
    out_.clear();
    return out_;
  }
  utf8_.finish(pending_);
  return emit(true);
}

// ---- generator ---------------------------------------------------------------------------------

Generator::Generator(GPT& model, std::shared_ptr<const Tokenizer> tok)
    : model_(model), cfg_(model.config()), tok_(std::move(tok)) {}

Decoder& Generator::decoder_for(int rows) {
  if (!dec_ || dec_->max_batch() < rows) {
    dec_.reset();  // free the old caches before allocating new ones
    dec_ = std::make_unique<Decoder>(model_, rows);
  }
  return *dec_;
}

int decodable_vocab(const ModelConfig& cfg, const Tokenizer* tok) {
  if (!tok) return cfg.vocab_size;
  return static_cast<int>(std::min<size_t>(static_cast<size_t>(cfg.vocab_size), tok->vocab_size()));
}

std::vector<SampleResult> Generator::generate(std::span<const TokenId> prompt, const GenerateSettings& s,
                                              const Callback& on_token) {
  s.validate();
  if (!s.stop.empty() && !tok_) fail("stop strings need a vocabulary to decode tokens into text");
  const int V = cfg_.vocab_size;
  for (TokenId t : prompt)
    if (t >= static_cast<TokenId>(V)) fail("prompt token id {} is out of range for a vocabulary of {}", t, V);
  std::vector<TokenId> start;
  if (prompt.empty()) {
    const auto eot = tok_ ? tok_->eot_token() : std::nullopt;
    if (!eot) fail("the prompt is empty and the vocabulary has no end-of-text token to start from");
    if (*eot >= static_cast<TokenId>(V))
      fail("the end-of-text token {} is outside the model's vocabulary", *eot);
    start.push_back(*eot);
    prompt = start;
  }
  if (s.max_new_tokens == 0) return std::vector<SampleResult>(s.num_samples);
  return s.beams > 0 ? beam(prompt, s, on_token) : sample(prompt, s, on_token);
}

namespace {
// The last n_ctx tokens of a sequence: what the model sees.
std::span<const TokenId> last_window(std::span<const TokenId> seq, int n_ctx) {
  return seq.size() > static_cast<size_t>(n_ctx) ? seq.subspan(seq.size() - n_ctx) : seq;
}
}  // namespace

std::vector<SampleResult> Generator::sample(std::span<const TokenId> prompt, const GenerateSettings& s,
                                            const Callback& cb) {
  const int K = s.num_samples, V = decodable_vocab(cfg_, tok_.get()), n_ctx = cfg_.n_ctx;
  Decoder& dec = decoder_for(K);
  const auto eot = tok_ ? tok_->eot_token() : std::nullopt;

  // Per sample: its sequence (prompt + generated), sampler, text and state.
  std::vector<std::vector<TokenId>> seq(K, std::vector<TokenId>(prompt.begin(), prompt.end()));
  for (auto& q : seq) q.reserve(prompt.size() + s.max_new_tokens);
  std::vector<Sampler> samplers;
  for (int k = 0; k < K; k++) {
    SamplingSettings ss = s.sampling;
    ss.seed = sample_seed(s.sampling.seed, k);
    samplers.emplace_back(ss);
  }
  std::vector<TextAssembler> text;
  for (int k = 0; k < K; k++) text.emplace_back(tok_, &s.stop);
  std::vector<SampleResult> results(K);
  std::vector<char> active(K, 1);

  dec.prefill(0, last_window(prompt, n_ctx));
  for (int k = 1; k < K; k++) dec.copy_row(k, 0);

  std::vector<float> work(V), probs(s.want_probs ? V : 0);
  std::vector<std::pair<TokenId, float>> top;
  std::vector<int> rows;
  std::vector<TokenId> next;
  rows.reserve(K);
  next.reserve(K);
  for (int step = 0; step < s.max_new_tokens; step++) {
    rows.clear();
    next.clear();
    for (int k = 0; k < K; k++) {
      if (!active[k]) continue;
      const float* lg = dec.logits(k);
      std::memcpy(work.data(), lg, V * sizeof(float));
      const std::span<const float> own(lg, V);
      if (s.show_probs > 0) top = top_logprobs(own, s.show_probs);
      TokenId id;
      if (s.want_probs) {
        samplers[k].distribution(work, seq[k], probs, seq[k].size() - results[k].ids.size());
        std::memcpy(work.data(), lg, V * sizeof(float));
      }
      id = samplers[k].sample(work, seq[k], seq[k].size() - results[k].ids.size());
      seq[k].push_back(id);
      results[k].ids.push_back(id);

      TokenEvent ev;
      ev.sample = k;
      ev.step = step;
      ev.id = id;
      if (s.logprobs) ev.logprob = token_logprob(own, id);
      ev.top = top;
      ev.logits = own;
      if (s.want_probs) ev.probs = probs;
      std::string held;
      if (s.stop_at_eot && eot && id == *eot) {
        ev.text = text[k].finish();
        ev.last = true;
        ev.finish = FinishReason::EndOfText;
      } else {
        ev.text = text[k].add(id);
        if (text[k].stopped()) {
          ev.last = true;
          ev.finish = FinishReason::Stop;
        } else if (step + 1 == s.max_new_tokens) {
          // The text of the token and whatever was held: one piece.
          held.assign(ev.text);
          held += text[k].finish();
          ev.text = held;
          ev.last = true;
          ev.finish = FinishReason::Length;
        }
      }
      if (ev.last) {
        active[k] = 0;
        results[k].finish = ev.finish;
        results[k].text = text[k].text();
      } else {
        rows.push_back(k);
        next.push_back(id);
      }
      if (cb) cb(ev);
    }
    if (rows.empty()) break;
    if (s.kv_cache) {
      dec.step(rows, next);
    } else {
      for (int k : rows) dec.prefill(k, last_window(seq[k], n_ctx));
    }
  }
  return results;
}

namespace {

// Beam search over decoder rows; the repetition penalty applies to each beam's own sequence.
struct DecoderBeamModel : BeamModel {
  Decoder& dec;
  int V;  // the tokens beams may take: those the vocabulary can decode
  float penalty;
  bool kv_cache;
  std::vector<std::vector<TokenId>> seq, next_seq;
  std::vector<TokenId> scratch;
  std::vector<int> rows;
  DecoderBeamModel(Decoder& d, int v, float r, bool kv) : dec(d), V(v), penalty(r), kv_cache(kv) {}
  int vocab() const override { return V; }
  void fill(int row, float* lp) {
    std::span<float> out(lp, V);
    std::memcpy(lp, dec.logits(row), V * sizeof(float));
    apply_repetition_penalty(out, seq[row], penalty, &scratch);
    log_softmax(out, out);
  }
  void start(std::span<const TokenId> prompt, int, float* lp) override {
    seq.assign(1, std::vector<TokenId>(prompt.begin(), prompt.end()));
    dec.prefill(0, last_window(prompt, dec.config().n_ctx));
    fill(0, lp);
  }
  void step(const std::vector<int>& parents, const std::vector<TokenId>& tokens, float* lp) override {
    const int n = static_cast<int>(parents.size());
    next_seq.resize(n);
    for (int i = 0; i < n; i++) {
      next_seq[i] = seq[parents[i]];
      next_seq[i].push_back(tokens[i]);
    }
    std::swap(seq, next_seq);
    seq.resize(n);
    rows.resize(n);
    for (int i = 0; i < n; i++) rows[i] = i;
    if (kv_cache) {
      dec.reorder(parents);
      dec.step(rows, tokens);
    } else {
      for (int i = 0; i < n; i++) dec.prefill(i, last_window(seq[i], dec.config().n_ctx));
    }
    for (int i = 0; i < n; i++) fill(i, lp + static_cast<size_t>(i) * V);
  }
};

}  // namespace

std::vector<SampleResult> Generator::beam(std::span<const TokenId> prompt, const GenerateSettings& s,
                                          const Callback& cb) {
  Decoder& dec = decoder_for(s.beams);
  const auto eot = tok_ ? tok_->eot_token() : std::nullopt;
  BeamSettings bs;
  bs.beams = s.beams;
  bs.max_new_tokens = s.max_new_tokens;
  bs.length_penalty = s.length_penalty;
  bs.num_return = s.num_samples;
  if (s.stop_at_eot) bs.eot = eot;
  if (!s.stop.empty())
    bs.stop = [&](std::span<const TokenId> ids) {
      TextAssembler t(tok_, &s.stop);
      for (TokenId id : ids) {
        t.add(id);
        if (t.stopped()) return true;
      }
      return false;
    };
  DecoderBeamModel m(dec, decodable_vocab(cfg_, tok_.get()), s.sampling.repetition_penalty, s.kv_cache);
  const auto hyps = beam_search(m, prompt, bs);

  std::vector<SampleResult> results;
  for (size_t k = 0; k < hyps.size(); k++) {
    const BeamHypothesis& h = hyps[k];
    SampleResult r;
    r.ids = h.tokens;
    r.score = h.score;
    TextAssembler text(tok_, &s.stop);
    std::string piece;
    for (size_t i = 0; i < h.tokens.size(); i++) {
      const TokenId id = h.tokens[i];
      TokenEvent ev;
      ev.sample = static_cast<int>(k);
      ev.step = static_cast<int>(i);
      ev.id = id;
      ev.logprob = h.logprobs[i];
      const bool last = i + 1 == h.tokens.size();
      if (s.stop_at_eot && eot && id == *eot) {
        ev.text = text.finish();
        ev.finish = FinishReason::EndOfText;
      } else {
        piece.assign(text.add(id));
        if (text.stopped()) {
          ev.finish = FinishReason::Stop;
        } else if (last) {
          piece += text.finish();
        }
        ev.text = piece;
      }
      ev.last = last;
      if (last) r.finish = ev.finish;
      if (cb) cb(ev);
    }
    r.text = text.text();
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace gpt
