// Training checkpoints that lose nothing. OUT/ of a training run holds:
//   checkpoint-NNNNNNNN/   the newest complete checkpoint: the model as a Hugging Face directory
//                          (config.json, model.safetensors, vocabulary) plus optimizer.safetensors
//                          (AdamW moments) and trainer_state.json (step, data position, RNG, ...)
//   latest                 the name of that directory, replaced atomically
//   config.json, model.safetensors, vocab files: hard links to the newest checkpoint's model, so OUT
//                          itself loads as a model directory (gpt generate --model OUT)
// A save writes everything into a hidden temporary directory, fsyncs it, renames it into place,
// then switches `latest`: a kill -9 at any moment leaves the previous checkpoint whole, and a
// failed save (disk full) removes its temporary directory and leaves everything else as it was.
// See docs/checkpoints.md.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/gpt.h"
#include "train/adamw.h"

namespace gpt {

struct TrainCheckpoint {
  std::string dir;      // OUT/checkpoint-NNNNNNNN
  int64_t step = 0;
  nlohmann::json state;  // trainer_state.json
};

// AdamW's state as a checkpoint holds it: the moments of every parameter of the model, in the
// parameter order, whatever the number of ranks that trained it (a sharded optimizer's moments are
// gathered first), and the step count.
struct OptimizerMoments {
  const float* m = nullptr;
  const float* v = nullptr;
  size_t n = 0;
  int64_t steps = 0;
};

// Saves step `step` into OUT (see above) and removes older checkpoints. Throws gpt::Error (with the
// previous checkpoint intact) if anything fails.
void save_checkpoint(const std::string& out, int64_t step, const GPT& model, const Tokenizer* tok,
                     const OptimizerMoments& moments, const nlohmann::json& state);
// The same for an optimizer that holds the moments of the whole model.
void save_checkpoint(const std::string& out, int64_t step, const GPT& model, const Tokenizer* tok,
                     const AdamW& opt, const nlohmann::json& state);

// The newest complete checkpoint in OUT, if any.
std::optional<TrainCheckpoint> find_checkpoint(const std::string& out);

// Loads the optimizer moments saved with a checkpoint into `opt` (the model's size must match): the
// whole model's moments, of which a sharded `opt` keeps its own shard.
void load_optimizer_state(const std::string& checkpoint_dir, AdamW& opt);

// Removes temporary directories that a killed save left behind in OUT.
void remove_stale_checkpoint_temps(const std::string& out);

}  // namespace gpt
