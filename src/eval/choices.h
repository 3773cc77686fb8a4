// Multiple-choice evaluation (HellaSwag-style, zero- or few-shot): each candidate completion is
// scored by the log-probabilities the model gives its tokens after the context, and the best
// candidate is the prediction. See docs/task-eval.md.
//
// Scoring, as llm.c and lm-evaluation-harness do it: the context and each choice are tokenized
// separately and concatenated; the score of a choice is the sum over its tokens of
// log p(token | context + earlier choice tokens) ("sum"), and that sum divided by the number of
// choice tokens ("mean", per-token normalisation, what accuracy_norm uses, as llm.c does), and that
// sum divided by the choice's length in characters ("per_char", accuracy_char: what
// lm-evaluation-harness calls acc_norm). When context + choice
// is longer than the model's window, only the last n_ctx + 1 tokens are kept (the context loses
// its start); such examples are counted as truncated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/gpt.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// One example: a context, its candidate completions and the index of the right one.
struct ChoiceExample {
  std::string context;
  std::vector<std::string> choices;
  // Per choice, the length lm-evaluation-harness's acc_norm divides by: Unicode characters of the
  // choice as the file gives it (a HellaSwag ending without the space added before it). Empty:
  // the characters of `choices`.
  std::vector<size_t> chars;
  int label = -1;
  size_t line = 0;  // 1-based line in its file (0 if not from a file)
};

// Reads JSONL, one example per non-blank line, in either format:
//   HellaSwag: {"ctx": "...", "endings": ["...", ...], "label": 2}; "ctx_a" + " " + "ctx_b" when
//              "ctx" is absent (the raw files have all three); label may be the string "2". Each
//              ending gets a leading space, as llm.c and lm-eval-harness's hellaswag task give it.
//   simple:    {"context": "...", "choices": ["...", ...], "answer": 1 or "the answer text"}; the
//              choices are appended verbatim (put a leading space in them if the text needs one).
// A malformed line (bad JSON, missing or mistyped field, label out of range, fewer than two choices,
// an empty context or choice) is an error naming the file and line, or, with skip_bad, is skipped
// and counted in *skipped (a warning per line goes to `warn`, if given).
std::vector<ChoiceExample> parse_choice_jsonl(std::string_view text, const std::string& name,
                                              bool skip_bad = false, size_t* skipped = nullptr,
                                              const std::function<void(const std::string&)>& warn = {});

// The scores of one example's choices.
struct ChoiceScores {
  std::vector<double> sum;     // per choice: sum of token log-probabilities
  std::vector<double> mean;    // per choice: sum / number of scored tokens
  std::vector<size_t> tokens;  // per choice: number of scored tokens
  std::vector<double> per_char;  // per choice: sum / characters (lm-eval's acc_norm); evaluate_choices
  int pred = 0;                  // argmax of sum (first on ties)
  int pred_norm = 0;             // argmax of mean
  int pred_char = 0;             // argmax of per_char
  bool truncated = false;      // some choice needed the context cut to fit the window
};

// Scores token sequences: context followed by each choice, all choices in one batch of the
// model's forward. The context must not be empty and every choice must have a token.
ChoiceScores score_choices(GPT& model, std::span<const TokenId> context,
                           const std::vector<std::vector<TokenId>>& choices);

struct ChoiceEvalOptions {
  int shots = 0;                          // solved examples prepended to each context
  std::vector<ChoiceExample> shots_pool;  // where they come from (may be the evaluated set itself)
  uint64_t seed = 1234;                   // which ones: a fixed shuffle per example
};

struct ChoicePrediction {
  size_t index = 0;  // 0-based position in the evaluated file
  ChoiceScores scores;
  int label = -1;
};

struct ChoiceEvalResult {
  size_t examples = 0, correct = 0, correct_norm = 0, correct_char = 0;
  size_t truncated = 0;  // examples whose context was cut to fit the window
  double accuracy = 0, accuracy_norm = 0, accuracy_char = 0;
  std::vector<ChoicePrediction> predictions;
};

// The few-shot prompt prefix of an example: K solved examples (context + right choice) drawn from
// the pool without the example itself (same context and choices), each followed by "\n\n".
std::string few_shot_prefix(const ChoiceEvalOptions& opt, const ChoiceExample& ex, size_t index);

// Evaluates every example; `progress(done, total)` after each (may be empty).
ChoiceEvalResult evaluate_choices(GPT& model, const Tokenizer& tok, std::span<const ChoiceExample> examples,
                                  const ChoiceEvalOptions& opt,
                                  const std::function<void(size_t, size_t)>& progress = {});

}  // namespace gpt
