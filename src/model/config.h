// The shape of a GPT: everything needed to build the network, nothing about its weights.
// Presets give the published shapes (GPT-1, GPT-2 small..XL, GPT-3 small..XL); the CLI's model
// flags override any field (cli/model_flags.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gpt {

// Where LayerNorm sits: GPT-2/3 normalise the input of each sub-block (pre-LN) and add a final
// LayerNorm; GPT-1 normalises after each residual add (post-LN) and has no final LayerNorm.
enum class LnPlacement { Pre, Post };
// GPT-3 alternates dense causal attention (even layers) with locally banded causal attention
// (odd layers: query i sees key j iff i - band < j <= i).
enum class AttentionKind { Dense, AlternatingBanded };

struct ModelConfig {
  std::string preset = "custom";  // the preset it started from, for display only
  int n_layer = 12;
  int n_head = 12;
  int n_embd = 768;
  int n_ctx = 1024;  // context length: the number of learned positions
  int vocab_size = 50257;
  LnPlacement ln = LnPlacement::Pre;
  AttentionKind attention = AttentionKind::Dense;
  int band = 256;         // band width W of the banded layers
  float dropout = 0.0f;   // embedding, attention and residual dropout (training only)
  bool bias = true;       // biases in the linear layers and LayerNorms
  bool tied_head = true;  // LM head shares the token embedding matrix
  float ln_eps = 1e-5f;

  int head_dim() const { return n_embd / n_head; }
  bool final_ln() const { return ln == LnPlacement::Pre; }
  // True if layer l (0-based) uses banded attention.
  bool banded(int l) const { return attention == AttentionKind::AlternatingBanded && (l % 2) == 1; }
  // Throws gpt::Error naming the first impossible field.
  void validate() const;
  // Number of trainable parameters (the tied head counted once).
  uint64_t num_parameters() const;
  // Parameters that take part in matrix products (for FLOP counts): every 2-D weight, the token
  // embedding counted once as the LM head, the position embedding excluded.
  uint64_t num_matmul_parameters() const;
  // Forward + backward FLOPs per token at sequence length T (6 N + attention 12 L C T_eff).
  double train_flops_per_token(int T) const;
  double forward_flops_per_token(int T) const;
  // The FLOPs per token that model FLOPs utilisation counts (PaLM's and llm.c's rule): 6 N + 12 L T C
  // for a training step, N the parameters without the position table, and a third of that for a
  // forward pass. Banded attention is counted as dense, as in that rule.
  double mfu_flops_per_token(int T, bool train) const;
  // Multi-line human-readable summary.
  std::string describe() const;
};

// The preset names, in display order.
const std::vector<std::string>& preset_names();
// A preset's configuration; throws gpt::Error listing the known names for an unknown one.
ModelConfig preset_config(const std::string& name);

const char* to_string(LnPlacement p);
const char* to_string(AttentionKind a);

}  // namespace gpt
