// Inside a forward pass (gpt inspect): for each layer of a model over a prompt, the statistics of
// the residual stream around its two LayerNorms, each attention head's entropy, and the logit lens
// (the model's own head, ln_f and the LM head, applied to each block's output). Everything comes
// from one prefill of the KV-cache Decoder through a ForwardObserver (model/gpt.h), so the numbers
// are those of the one transformer block that generation runs. See docs/inspect.md.
#pragma once
#include <nlohmann/json.hpp>

#include <span>
#include <string>
#include <vector>

#include "model/gpt.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

struct InspectOptions {
  int top_k = 5;               // tokens per logit-lens entry, 1..vocab_size
  bool all_positions = false;  // the logit lens at every position, not only the last
};

// Per-position statistics of a [T, C] stream over its C channels: the mean, the standard deviation
// (population, as LayerNorm computes it) and the L2 norm.
struct StreamStats {
  double mean = 0, std = 0, norm = 0;
};
// A stream summarised: the per-position statistics averaged over the T positions, and at the last.
struct StreamSummary {
  StreamStats avg, last;
};

struct LensToken {
  TokenId id = 0;
  double prob = 0;  // softmax probability under the model's head
};

struct LayerInspection {
  int layer = 0;
  bool banded = false;
  // ln_1 (k = 0) and ln_2 (k = 1): their inputs and outputs (BlockStates in model/gpt.h: for pre-LN,
  // ln_1's input is the block's input; for post-LN it is the input plus the attention).
  StreamSummary ln_in[2], ln_out[2];
  StreamSummary out;            // the block's output, the stream the lens reads
  std::vector<double> entropy;  // per head, nats: -sum p ln p per query, averaged over queries
  double uniform_entropy = 0;   // the same for attention spread evenly over the keys the mask allows
  std::vector<std::vector<LensToken>> lens;  // per lens position (from lens_from), top_k, most likely first
};

struct Inspection {
  std::vector<TokenId> ids;
  ModelConfig config;
  int top_k = 0;
  int lens_from = 0;  // the first position of the logit lens (T - 1 unless all positions)
  std::vector<LayerInspection> layers;
};

// Runs the prompt `ids` (1..n_ctx tokens) through the model once (a Decoder prefill on the model's
// backend, which must be a CPU one: the attention capture) and collects the inspection. Throws
// gpt::Error on an empty or too long prompt, an id outside the vocabulary, or top_k out of 1..V.
Inspection inspect(GPT& model, std::span<const TokenId> ids, const InspectOptions& opt = {});

// A token as text for display: its bytes with invalid UTF-8 shown as U+FFFD, or "#id" when there is
// no tokenizer or the id is outside it.
std::string inspect_token_text(const Tokenizer* tok, TokenId id);

// The inspection as JSON: {"tokens", "ids", "n_layer", "n_head", "ln", "top_k", "lens_from",
// "layers": [{"layer", "banded", "ln_1": {"in", "out"}, "ln_2": {...}, "out", each {"avg", "last"} of
// {"mean", "std", "norm"}, "entropy": [per head], "uniform_entropy", "lens": [{"position", "top":
// [{"id", "token", "prob"}]}]}]}.
nlohmann::json inspection_json(const Inspection& r, const Tokenizer* tok);
// The same as aligned text tables (stream statistics averaged over positions, entropies, the lens).
std::string inspection_text(const Inspection& r, const Tokenizer* tok);
// The logit lens as an SVG heat map (train/plot.h): layers down, lens positions across, each cell
// the top token's text coloured by its probability.
void write_inspection_svg(const std::string& path, const Inspection& r, const Tokenizer* tok);

}  // namespace gpt
