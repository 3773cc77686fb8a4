// Putting a model on a backend. Models are loaded and initialised in host memory on the CPU
// backend (io/model_dir.h, GPT::init_gpt2); training, evaluation and the benchmarks then run them
// on the device the user picked (--device). See docs/backends.md, "Training on a device".
#pragma once
#include <vector>

#include "backend/backend.h"
#include "model/gpt.h"

namespace gpt {

// `model` running on `be`: the model itself when it already does, else a new model with its
// configuration (dropout included) and a copy of its host parameters, which the first forward
// uploads. Moves from `model` either way.
GPT on_backend(GPT&& model, Backend& be);

// The gradients of the last backward as host floats (a download on a device backend).
std::vector<float> host_gradients(GPT& model);

}  // namespace gpt
