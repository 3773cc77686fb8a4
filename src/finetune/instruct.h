// Instruction tuning (and dialogue, summarization: the same with other templates) as a
// FinetuneTask: records rendered by a template, tokenised with a trained mask, and a loss on the
// response tokens only. Batches are padded (each row to the longest in the batch, with
// <|endoftext|>, its targets ignored) or packed (several examples per row, one after another; each
// already ends with <|endoftext|>, which separates them). See docs/instruction-tuning.md.
#pragma once
#include <span>
#include <string>
#include <vector>

#include "finetune/loop.h"
#include "finetune/records.h"
#include "finetune/template.h"

namespace gpt {

struct EncodeReport {
  size_t examples = 0;
  size_t truncated = 0;  // longer than max_len + 1 tokens: cut at the end
  size_t dropped = 0;    // of those, left with no response token to train on: dropped
  size_t skipped = 0;    // records the template rejected (with skip_bad)
};

// Renders and encodes records. Each example keeps at most max_len + 1 tokens (max_len inputs and
// their targets). A record the template rejects throws, or (skip_bad) is counted and left out.
std::vector<EncodedExample> encode_records(const std::vector<Record>& records, const Tokenizer& tok,
                                           const PromptTemplate& tmpl, int max_len, const std::string& path,
                                           bool skip_bad, EncodeReport* report = nullptr);

// A batch ready for GPT::forward: inputs and targets [B, T], targets kIgnoreIndex where not trained.
struct TokenBatch {
  int B = 0, T = 0;
  std::vector<TokenId> inputs;
  std::vector<int32_t> targets;
};
// One row per example, padded with `pad` to the longest.
TokenBatch pad_batch(std::span<const EncodedExample* const> examples, TokenId pad);
// Examples concatenated into rows of at most max_len + 1 tokens (first fit in order), then padded.
TokenBatch pack_batch(std::span<const EncodedExample* const> examples, TokenId pad, int max_len);

class InstructTask : public FinetuneTask {
 public:
  InstructTask(std::vector<EncodedExample> train, std::vector<EncodedExample> val, TokenId eot, int max_len,
               bool pack, int eval_batch);
  std::string name() const override { return "instruct"; }
  size_t size(Split s) const override;
  double train_batch(GPT& model, std::span<const size_t> idx, float grad_scale, uint64_t seed) override;
  // {"loss": mean cross-entropy over every response token of the split} (padded batches).
  nlohmann::json evaluate(GPT& model, Split s) override;

 private:
  TokenBatch make_batch(const std::vector<EncodedExample>& set, std::span<const size_t> idx, bool pack) const;
  std::vector<EncodedExample> train_, val_;
  TokenId eot_;
  int max_len_;
  bool pack_;
  int eval_batch_;
};

// The response loss over a set of examples: sum of per-token losses / number of response tokens.
double response_loss(GPT& model, const std::vector<EncodedExample>& examples, TokenId pad, int batch);

}  // namespace gpt
