// Text embeddings (docs/embeddings.md): the model's final hidden states, what the LM head reads
// (ln_f's output for pre-LN, the last block's output for post-LN), pooled into one vector per input.
// The states come from GPT::forward_hidden, the one transformer, on whatever backend the model runs;
// nothing here computes a layer.
//
// Batching: inputs are sorted by length and run in right-padded batches (pad_right). In a causal
// model a position sees only the positions before it, so the padding after an input changes none of
// its states: an input's vector is the same alone or in any batch (to the last bits of the GEMMs).
#pragma once
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "model/gpt.h"

namespace gpt {

// A right-padded batch: ids [B, T] (each row padded with `pad` up to the longest), each row's last
// real position. Shared with classification (finetune/classify.h), which reads that position.
struct PaddedBatch {
  int B = 0, T = 0;
  std::vector<TokenId> ids;
  std::vector<int> last;
};
PaddedBatch pad_right(std::span<const std::vector<TokenId>* const> rows, TokenId pad);

// How an input's states become one vector.
//   mean: the average over the input's positions (the default: see docs/embeddings.md);
//   last: the last position's state, the only one in a causal model that has seen the whole input.
enum class Pooling { Mean, Last };
std::optional<Pooling> parse_pooling(std::string_view name);  // "mean" | "last"
const char* pooling_name(Pooling p);

struct EmbedOptions {
  Pooling pooling = Pooling::Mean;
  bool normalize = false;      // scale each vector to unit L2 norm (a zero vector stays zero)
  size_t batch_tokens = 4096;  // most padded tokens in one forward pass (an input longer runs alone)
};

// Throws gpt::Error, naming the input by its index, unless every input has 1..n_ctx tokens, each
// below the model's vocabulary size. embed() checks this itself; callers that must answer before
// running anything (the server's 400s) call it first.
void check_embed_inputs(const ModelConfig& cfg, std::span<const std::vector<TokenId>> inputs);

// One vector of n_embd floats per input, row-major [inputs.size(), n_embd], in the inputs' order.
// Runs the model's inference forward (no dropout) on its backend; uses the model's own activation
// workspace, so it must not run at the same time as another forward of the same model.
std::vector<float> embed(GPT& model, std::span<const std::vector<TokenId>> inputs,
                         const EmbedOptions& opt = {});

}  // namespace gpt
