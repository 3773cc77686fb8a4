// Text generation, the library API: a prompt and settings in, tokens out through a callback as
// they are produced. Sampling runs K samples as one batch of decoder rows; beam search runs its
// beams as rows and reports the finished hypotheses at the end. The rows are a Decoder over the
// model, on whatever backend it runs. See docs/sampling.md.
#pragma once
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "generate/decoder.h"
#include "generate/sampling.h"
#include "generate/utf8_stream.h"
#include "model/gpt.h"

namespace gpt {

// The tokens generation may produce: the model's output rows that the vocabulary can decode. A
// model may have more rows than its vocabulary has tokens (a small character vocabulary on a model
// of GPT-2's width, or a vocabulary padded to a round size); the extra rows are never sampled.
int decodable_vocab(const ModelConfig& cfg, const Tokenizer* tok);

struct GenerateSettings {
  int max_new_tokens = 100;
  SamplingSettings sampling;  // ignored by beam search, except the repetition penalty
  int num_samples = 1;        // independent samples (with beams: the best hypotheses returned)
  int beams = 0;              // > 0: length-normalised beam search of this width
  float length_penalty = 1.0f;
  std::vector<std::string> stop;  // a sample ends when its text contains one (not printed)
  bool stop_at_eot = true;        // the end-of-text token ends a sample
  bool kv_cache = true;           // false: every step re-runs the whole window (a reference)
  int show_probs = 0;             // report the N most probable tokens of each step
  bool logprobs = true;           // compute each token's log-probability (a pass over the vocabulary)
  bool want_probs = false;        // report the distribution each token was drawn from
  // Throws gpt::Error on invalid or conflicting settings.
  void validate() const;
};

enum class FinishReason { Length, EndOfText, Stop };
const char* to_string(FinishReason r);  // "length", "eot", "stop"

// One generated token, as the callback sees it.
struct TokenEvent {
  int sample = 0;  // 0..num_samples-1 (beam search: the hypothesis' rank)
  int step = 0;    // 0 for the first generated token
  TokenId id = 0;
  float logprob = 0;      // log-probability of id under the model's own distribution (0 if not asked)
                          // (beam search: after the repetition penalty, as beam scores it)
  std::string_view text;  // what this token adds to the sample's text: valid UTF-8, maybe empty
                          // (a character split over tokens comes out with its last token)
  std::span<const std::pair<TokenId, float>> top;  // show_probs most probable (id, logprob)
  std::span<const float> logits;                   // the model's own next-token logits (empty in beam search)
  std::span<const float> probs;                    // the distribution id was drawn from (with want_probs)
  bool last = false;                               // the sample ends here
  FinishReason finish = FinishReason::Length;      // why, when last
};

struct SampleResult {
  std::vector<TokenId> ids;  // generated (an ending end-of-text token included)
  std::string text;          // valid UTF-8, up to (not including) a stop string
  FinishReason finish = FinishReason::Length;
  double score = 0;  // beam search: the hypothesis' length-normalised score
};

// A sample's text, built token by token: bytes through a Utf8Stream, and any suffix that could
// be the start of a stop string held back until it is known not to be one.
class TextAssembler {
 public:
  TextAssembler(std::shared_ptr<const Tokenizer> tok, const std::vector<std::string>* stop);
  // Adds a token's bytes; returns the text that is now final. Sets stopped() when a stop string
  // appears (the text before it is returned, the rest dropped).
  std::string_view add(TokenId id);
  // End of the sample: whatever is held.
  std::string_view finish();
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }

 private:
  std::string_view emit(bool final);
  std::shared_ptr<const Tokenizer> tok_;
  const std::vector<std::string>* stop_;
  Utf8Stream utf8_;
  std::string pending_, out_, text_;
  bool stopped_ = false;
};

class Generator {
 public:
  // `model` must outlive the generator. Text needs a tokenizer (or set_tokenizer).
  explicit Generator(GPT& model, std::shared_ptr<const Tokenizer> tok = nullptr);
  void set_tokenizer(std::shared_ptr<const Tokenizer> tok) { tok_ = std::move(tok); }
  const std::shared_ptr<const Tokenizer>& tokenizer() const { return tok_; }

  using Callback = std::function<void(const TokenEvent&)>;
  // Generates from `prompt` (ids; empty = start from the end-of-text token; longer than the
  // context: its last n_ctx tokens are used). Calls on_token for every token of every sample,
  // in order of steps (sampling) or after the search (beam search), and returns the samples.
  std::vector<SampleResult> generate(std::span<const TokenId> prompt, const GenerateSettings& s,
                                     const Callback& on_token = {});

  // The decoder of the last call (its caches, for tests and benchmarks); null before one.
  Decoder* decoder() { return dec_.get(); }

 private:
  Decoder& decoder_for(int rows);
  std::vector<SampleResult> sample(std::span<const TokenId> prompt, const GenerateSettings& s,
                                   const Callback& cb);
  std::vector<SampleResult> beam(std::span<const TokenId> prompt, const GenerateSettings& s,
                                 const Callback& cb);
  GPT& model_;
  ModelConfig cfg_;
  std::shared_ptr<const Tokenizer> tok_;
  std::unique_ptr<Decoder> dec_;
};

}  // namespace gpt
