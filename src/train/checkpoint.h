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
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/gpt.h"
#include "train/adamw.h"
#include "train/data_loader.h"

namespace gpt {

// trainer_state.json as read back: what resuming uses, every field checked for type and range.
struct TrainerState {
  int64_t step = 0;
  LoaderState loader;
  double elapsed_s = 0.0;
  uint64_t tokens = 0;
  // The run that wrote it (absent in checkpoints of older versions).
  std::optional<int64_t> ranks, batch_size, grad_accum;
};

// Checks trainer_state.json's value `j` (every field gpt train writes: types, ranges, the random
// generator's state) and returns what resuming needs; gpt::Error names `path` and the field.
TrainerState parse_trainer_state(const nlohmann::json& j, const std::string& path);

struct TrainCheckpoint {
  std::string dir;      // OUT/checkpoint-NNNNNNNN
  int64_t step = 0;
  nlohmann::json state;  // trainer_state.json
  TrainerState trainer;  // the same, checked
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
// previous checkpoint intact) if anything fails. `midway` (tests: a kill) runs halfway, with the
// model written and the checkpoint not yet in place.
void save_checkpoint(const std::string& out, int64_t step, const GPT& model, const Tokenizer* tok,
                     const OptimizerMoments& moments, const nlohmann::json& state,
                     const std::function<void()>& midway = {});
// The same for an optimizer that holds the moments of the whole model.
void save_checkpoint(const std::string& out, int64_t step, const GPT& model, const Tokenizer* tok,
                     const AdamW& opt, const nlohmann::json& state);

// The newest complete checkpoint in OUT, if any: `latest` and its trainer_state.json read and
// checked (parse_trainer_state).
std::optional<TrainCheckpoint> find_checkpoint(const std::string& out);

// Checks every file of a checkpoint before anything of it is used, so that a damaged one is
// reported by its file and field: config.json, the headers and sizes of model.safetensors and
// optimizer.safetensors (a truncated file), the moments' sizes against the config, and the
// optimizer's step count. (The weights themselves are checked when they load.)
void check_checkpoint_files(const TrainCheckpoint& c);

// Loads the optimizer moments saved with a checkpoint into `opt` (the model's size must match): the
// whole model's moments, of which a sharded `opt` keeps its own shard.
void load_optimizer_state(const std::string& checkpoint_dir, AdamW& opt);

// Removes temporary directories that a killed save left behind in OUT.
void remove_stale_checkpoint_temps(const std::string& out);

}  // namespace gpt
