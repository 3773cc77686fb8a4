#include "io/peft.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "io/safetensors.h"

namespace gpt {

void save_lora(const std::string& dir, const LoraAdapters& adapters, const std::string& base_model_name) {
  make_dirs(dir);
  std::vector<TensorView> tensors;
  const std::vector<float> h = adapters.host_params();
  for (const auto& t : adapters.layout()) tensors.push_back({t.name, DType::F32, t.shape, h.data() + t.offset});
  write_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  const LoraConfig& c = adapters.config();
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model_name;
  j["r"] = c.r;
  // floats as their shortest decimal (0.05, not 0.05000000074505806)
  auto dec = [](float x) { return std::stod(fmt::format("{}", x)); };
  j["lora_alpha"] = dec(c.alpha);
  j["lora_dropout"] = dec(c.dropout);
  j["target_modules"] = c.targets;
  j["fan_in_fan_out"] = true;  // GPT-2's Conv1D stores weights [in, out]
  j["bias"] = "none";
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["use_rslora"] = false;
  j["modules_to_save"] = nullptr;
  write_file_atomic(dir + "/adapter_config.json", j.dump(2) + "\n");
}

LoraAdapters load_lora(const std::string& dir, const GPT& model) {
  const std::string cpath = dir + "/adapter_config.json";
  const nlohmann::json j = parse_json(read_regular_file(cpath), cpath);
  if (!j.is_object()) fail("{}: not a JSON object", cpath);
  auto get = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) fail("{}: no \"{}\"", cpath, key);
    return j[key];
  };
  if (!get("peft_type").is_string() || get("peft_type") != "LORA")
    fail("{}: peft_type is {}, expected \"LORA\"", cpath, json_excerpt(get("peft_type")));
  LoraConfig c;
  if (!get("r").is_number_integer()) fail("{}: r must be an integer", cpath);
  c.r = get("r").get<int>();
  if (!get("lora_alpha").is_number()) fail("{}: lora_alpha must be a number", cpath);
  c.alpha = get("lora_alpha").get<float>();
  c.dropout =
      j.contains("lora_dropout") && j["lora_dropout"].is_number() ? j["lora_dropout"].get<float>() : 0.0f;
  const auto& tm = get("target_modules");
  if (!tm.is_array()) fail("{}: target_modules must be a list of module names", cpath);
  c.targets.clear();
  for (const auto& t : tm) {
    if (!t.is_string()) fail("{}: target_modules must be a list of module names", cpath);
    c.targets.push_back(t.get<std::string>());
  }
  if (j.contains("use_rslora") && j["use_rslora"].is_boolean() && j["use_rslora"].get<bool>())
    fail("{}: use_rslora (scale alpha/sqrt(r)) is not supported", cpath);
  if (j.contains("bias") && j["bias"].is_string() && j["bias"] != "none")
    fail("{}: bias \"{}\" is not supported (only \"none\")", cpath, j["bias"].get<std::string>());
  if (j.contains("fan_in_fan_out") && j["fan_in_fan_out"].is_boolean() && !j["fan_in_fan_out"].get<bool>())
    fail("{}: fan_in_fan_out is false, but GPT-2's projections are Conv1D (it must be true)", cpath);
  try {
    lora_target_mask(c.targets);
  } catch (const Error& e) {
    fail("{}: {}", cpath, e.what());
  }

  LoraAdapters a(model.config(), c, model.backend());
  std::vector<float> h(a.num_parameters());
  const std::string path = dir + "/adapter_model.safetensors";
  SafetensorsFile f = SafetensorsFile::open(path);
  for (const auto& e : f.tensors()) {
    std::string_view name = e.name;
    const LoraTensor* t = a.find(name);
    if (!t) fail("{}: unexpected tensor {} (not an adapter of this model and config)", path, e.name);
    if (e.shape != t->shape)
      fail("{}: tensor {} has shape {}, expected {}", path, e.name, shape_string(e.shape),
           shape_string(t->shape));
    f.read_f32(e, std::span<float>(h.data() + t->offset, t->numel));
  }
  for (const auto& t : a.layout())
    if (!f.find(t.name)) fail("{}: missing tensor {}", path, t.name);
  a.set_params(h.data());
  return a;
}

}  // namespace gpt
