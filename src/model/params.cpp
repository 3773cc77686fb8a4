#include "model/params.h"

#include <fmt/format.h>

namespace gpt {

std::vector<ParamInfo> parameter_layout(const ModelConfig& cfg) {
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, T = cfg.n_ctx;
  std::vector<ParamInfo> out;
  size_t offset = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    out.push_back({std::move(name), std::move(shape), offset, n, decay});
    offset += n;
  };
  auto layer_norm = [&](const std::string& prefix) {
    add(prefix + ".weight", {C}, false);
    if (cfg.bias) add(prefix + ".bias", {C}, false);
  };
  auto linear = [&](const std::string& prefix, int64_t in, int64_t outd) {
    add(prefix + ".weight", {in, outd}, true);  // Conv1D layout: [in, out]
    if (cfg.bias) add(prefix + ".bias", {outd}, false);
  };
  add("wte.weight", {V, C}, true);
  add("wpe.weight", {T, C}, true);
  for (int l = 0; l < cfg.n_layer; l++) {
    std::string h = fmt::format("h.{}.", l);
    layer_norm(h + "ln_1");
    linear(h + "attn.c_attn", C, 3 * C);
    linear(h + "attn.c_proj", C, C);
    layer_norm(h + "ln_2");
    linear(h + "mlp.c_fc", C, 4 * C);
    linear(h + "mlp.c_proj", 4 * C, C);
  }
  if (cfg.final_ln()) layer_norm("ln_f");
  if (!cfg.tied_head) add("lm_head.weight", {V, C}, true);
  return out;
}

}  // namespace gpt
