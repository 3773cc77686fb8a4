// The flags every command that builds a model shares: a preset gives the defaults, the shape
// flags override them. `gpt init`, `gpt info --preset` and the benchmarks use them.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "model/config.h"

namespace gpt::cli {

struct ModelFlags {
  std::string preset;
  std::optional<int> n_layer, n_head, n_embd, context, vocab_size, band;
  std::optional<std::string> ln, attention;
  std::optional<float> dropout;
  bool no_bias = false, untied_head = false;

  // True if any shape flag was given.
  bool any_shape() const {
    return n_layer || n_head || n_embd || context || vocab_size || band || ln || attention || dropout ||
           no_bias || untied_head;
  }
  // The preset (or `fallback` when none was named) with the flags applied, validated.
  ModelConfig resolve(const std::string& fallback = "gpt2") const;
};

// Registers --preset and the shape flags on `cmd`.
void add_model_flags(CLI::App* cmd, ModelFlags& f, bool with_preset = true);

}  // namespace gpt::cli
