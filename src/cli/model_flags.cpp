#include "cli/model_flags.h"

#include "core/error.h"

namespace gpt::cli {

void add_model_flags(CLI::App* cmd, ModelFlags& f, bool with_preset) {
  if (with_preset) {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    cmd->add_option("--preset", f.preset, "Model shape to start from: " + names)->option_text("NAME");
  }
  cmd->add_option("--n-layer", f.n_layer, "Number of transformer blocks")->option_text("N");
  cmd->add_option("--n-head", f.n_head, "Attention heads per block")->option_text("N");
  cmd->add_option("--n-embd", f.n_embd, "Embedding width (a multiple of --n-head)")->option_text("N");
  cmd->add_option("--context", f.context, "Context length (learned positions)")->option_text("N");
  cmd->add_option("--vocab-size", f.vocab_size, "Vocabulary size")->option_text("N");
  cmd->add_option("--ln", f.ln, "LayerNorm placement: pre (GPT-2/3) or post (GPT-1)")
      ->option_text("pre|post");
  cmd->add_option("--attention", f.attention, "dense, or banded (odd layers see only the last --band keys)")
      ->option_text("dense|banded");
  cmd->add_option("--band", f.band, "Band width W of banded layers: query i sees keys i-W < j <= i")
      ->option_text("W");
  cmd->add_option("--dropout", f.dropout, "Dropout probability (embeddings, attention, residual)")
      ->option_text("P");
  cmd->add_flag("--no-bias", f.no_bias, "No biases in the linear layers and LayerNorms");
  cmd->add_flag("--untied-head", f.untied_head, "A separate LM head instead of the tied token embedding");
}

ModelConfig ModelFlags::resolve(const std::string& fallback) const {
  ModelConfig c = preset_config(preset.empty() ? fallback : preset);
  // Dropout is a training setting, not a shape: only shape flags mark the preset as modified.
  if (n_layer || n_head || n_embd || context || vocab_size || band || ln || attention || no_bias ||
      untied_head)
    c.preset += " (modified)";
  if (n_layer) c.n_layer = *n_layer;
  if (n_head) c.n_head = *n_head;
  if (n_embd) c.n_embd = *n_embd;
  if (context) c.n_ctx = *context;
  if (vocab_size) c.vocab_size = *vocab_size;
  if (band) c.band = *band;
  if (dropout) c.dropout = *dropout;
  if (ln) {
    if (*ln == "pre") {
      c.ln = LnPlacement::Pre;
    } else if (*ln == "post") {
      c.ln = LnPlacement::Post;
    } else {
      fail("--ln must be pre or post, got \"{}\"", *ln);
    }
  }
  if (attention) {
    if (*attention == "dense") {
      c.attention = AttentionKind::Dense;
    } else if (*attention == "banded" || *attention == "alternating_banded") {
      c.attention = AttentionKind::AlternatingBanded;
    } else {
      fail("--attention must be dense or banded, got \"{}\"", *attention);
    }
  }
  if (band && c.attention == AttentionKind::Dense)
    fail("--band needs --attention banded (or a GPT-3 preset)");
  if (no_bias) c.bias = false;
  if (untied_head) c.tied_head = false;
  c.validate();
  return c;
}

}  // namespace gpt::cli
