#include "train/device_model.h"

#include <algorithm>

namespace gpt {

GPT on_backend(GPT&& model, Backend& be) {
  if (&model.backend() == &be) return std::move(model);
  GPT out(model.config(), be);
  const GPT& src = model;  // the const params(): reading must not mark the source as changed
  std::copy(src.params(), src.params() + src.num_parameters(), out.params());
  return out;
}

std::vector<float> host_gradients(GPT& model) {
  std::vector<float> g(model.num_parameters());
  model.backend().to_host(g.data(), model.grads(), g.size() * sizeof(float));
  return g;
}

}  // namespace gpt
