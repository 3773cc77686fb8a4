// The pretraining loop: batches from token shards, forward, backward, gradient accumulation,
// clipping, AdamW on a warmup + decay schedule, validation, samples, metrics and checkpoints that
// resume bit-exactly. See docs/training-loop.md.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "model/config.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace gpt {

class Backend;
class GPT;
class Tokenizer;
namespace dist {
class Communicator;
}

// Fault injection, for tests: called at fixed points of each step (an empty hook does nothing). The
// CLI binds them from GPT_TEST_* variables (cli/cmd_train.cpp) so that its tests can kill, poison or
// stop a real run; unit tests set them directly.
struct TrainHooks {
  // After optimizer step `step`, before anything of it is saved (a test kills the process here).
  std::function<void(int64_t step)> after_step;
  // True: a NaN goes into the first weight before step `step` (the loss must become NaN and the run
  // stop cleanly).
  std::function<bool(int64_t step)> poison_before;
  // True: an ordinary error on this rank at this step (the other ranks must not hang).
  std::function<bool(int rank, int64_t step)> fail_at;
  // Halfway through the save of step `step`: the model written, the checkpoint not yet in place.
  std::function<void(int64_t step)> in_save;
  // True: the run ends after step `step`, without the final save.
  std::function<bool(int64_t step)> stop_after;
};

struct TrainConfig {
  std::string data_dir, out_dir;
  // The model: a directory to start from, or a shape initialised with GPT-2's scheme from `seed`.
  std::string init_dir;
  std::optional<ModelConfig> model;  // used when init_dir is empty (vocab_size 0: the data's vocabulary)

  int steps = 1000;
  int batch_size = 8;
  int seq_len = 0;  // 0: the model's context
  int grad_accum = 1;
  LrSchedule schedule;  // steps is set from `steps`
  AdamWConfig adam;
  float grad_clip = 1.0f;  // 0: off
  float dropout = 0.0f;
  uint64_t seed = 1337;
  bool shuffle = false;

  int eval_every = 0;  // 0: only at the end when there is validation data
  int eval_batches = 20;
  int save_every = 0;  // 0: only at the end
  int sample_every = 0;
  int sample_tokens = 200;
  // Writes a sample of `tokens` tokens from the model as it is, seeded (sample_every > 0 needs it).
  // The trainer sits below generation, so the CLI hands it the generation code's sampler
  // (cli/cmd_train.cpp: temperature 0.8, top-k 200, from <|endoftext|> or a newline).
  std::function<std::string(GPT& model, const std::shared_ptr<const Tokenizer>& tok, int tokens, uint64_t seed)>
      sampler;
  bool resume = false;
  bool quiet = false;
  // The ranks of a data-parallel run (docs/distributed.md); nullptr: dist::world(). batch_size is
  // per rank: a step sees batch_size x grad_accum x ranks sequences.
  dist::Communicator* comm = nullptr;
  // Where the model trains: a backend_for() name ("cpu", "cuda", "cpu-staged", ...), or `backend`
  // itself when not null (tests). Parameters, gradients and AdamW moments live in its memory; see
  // docs/backends.md, "Training on a device".
  std::string device = "cpu";
  Backend* backend = nullptr;
  TrainHooks hooks;
};

// Runs the training described by `cfg`. Throws gpt::Error with one clear message on bad input or a
// failure (a non-finite loss, a failed save), leaving the last good checkpoint in place.
// With several ranks, an error that every rank meets together (bad settings, a NaN loss) is thrown
// as dist::CollectiveError on every rank, for rank 0 to report; an error on some ranks only is
// printed (one line naming the rank) and ends the whole run through Communicator::abort, so that
// no rank waits forever on a dead one.
void train(const TrainConfig& cfg);

}  // namespace gpt
