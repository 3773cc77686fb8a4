#include "io/model_dir.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/memory.h"
#include "core/progress.h"  // format_count
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/packed_model.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {

namespace {

// GPT2LMHeadModel's state dict names the body "transformer.*"; GPT2Model's (and the published
// openai-community/gpt2 files) have no prefix. Both load.
constexpr std::string_view kPrefix = "transformer.";

std::string_view strip_prefix(std::string_view name) {
  return name.starts_with(kPrefix) ? name.substr(kPrefix.size()) : name;
}

// h.<layer>.attn.bias / h.<layer>.attn.masked_bias: the causal mask and its fill value, saved as
// buffers by older transformers versions. gpt.cpp computes the mask; nothing to load.
bool is_mask_buffer(std::string_view name) {
  if (!name.starts_with("h.")) return false;
  size_t i = 2;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') i++;
  if (i == 2) return false;
  std::string_view rest = name.substr(i);
  return rest == ".attn.bias" || rest == ".attn.masked_bias";
}

std::string base_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// model.safetensors, or every shard listed by model.safetensors.index.json.
std::vector<SafetensorsFile> open_weights(const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  if (path_exists(single)) {  // a FIFO or directory there is an error, not "no weights"
    std::vector<SafetensorsFile> files;
    files.push_back(SafetensorsFile::open(single));
    return files;
  }
  const std::string index = dir + "/model.safetensors.index.json";
  if (path_exists(index)) {
    const nlohmann::json j = parse_json(read_regular_file(index), index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: expected a JSON object with a \"weight_map\" object", index);
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail("{}: weight_map[\"{}\"] is not a file name", index, name);
      const std::string& f = file.get_ref<const std::string&>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail("{}: weight_map[\"{}\"] = \"{}\" is not a file in the directory", index, name, f);
      shards.insert(f);
    }
    std::vector<SafetensorsFile> files;
    for (const auto& f : shards) files.push_back(SafetensorsFile::open(dir + "/" + f));
    return files;
  }
  if (file_exists(dir + "/pytorch_model.bin"))
    fail(
        "{}: has pytorch_model.bin but no model.safetensors: gpt.cpp reads safetensors only "
        "(re-save with save_pretrained(dir, safe_serialization=True))",
        dir);
  fail("{}: no model.safetensors", dir);
}

struct Found {
  const SafetensorsFile* file;
  const TensorEntry* tensor;
};

// Non-finite floats: all exponent bits set.
size_t count_non_finite(const float* p, size_t n, size_t* first) {
  size_t count = 0;
  const auto* u = reinterpret_cast<const uint32_t*>(p);
#pragma omp parallel for reduction(+ : count) schedule(static) if (n > (1 << 20))
  for (size_t i = 0; i < n; i++) count += (u[i] & 0x7f800000u) == 0x7f800000u;
  if (count > 0)
    for (size_t i = 0; i < n; i++)
      if ((u[i] & 0x7f800000u) == 0x7f800000u) {
        *first = i;
        break;
      }
  return count;
}

std::string index_text(size_t i, const std::vector<int64_t>& shape) {
  if (shape.empty()) return fmt::format("{}", i);
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    const auto n = static_cast<size_t>(std::max<int64_t>(shape[d], 1));
    idx[d] = static_cast<int64_t>(i % n);
    i /= n;
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}

}  // namespace

void FiniteCheck::add(std::string_view tensor, std::span<const float> values,
                      const std::vector<int64_t>& shape) {
  size_t first = 0;
  const size_t n = count_non_finite(values.data(), values.size(), &first);
  if (n == 0) return;
  if (count_ == 0) {
    first_ = tensor;
    first_shape_ = shape;
    first_index_ = first;
    first_count_ = n;
  }
  count_ += n;
  tensors_++;
}

void FiniteCheck::add_model(const GPT& model) {
  for (const ParamInfo& p : model.layout())
    add(p.name, std::span<const float>(model.params() + p.offset, p.numel), p.shape);
}

std::string FiniteCheck::describe() const {
  if (ok()) return "";
  std::string s =
      fmt::format("tensor \"{}\" holds {} NaN or infinite value{} (the first at {})", first_, first_count_,
                  first_count_ == 1 ? "" : "s", index_text(first_index_, first_shape_));
  if (tensors_ > 1)
    s += fmt::format(", and {} other tensor{} {} more", tensors_ - 1, tensors_ == 2 ? "" : "s",
                     count_ - first_count_);
  return s;
}

void FiniteCheck::report(std::string_view where, WeightCheck check) const {
  if (ok()) return;
  if (check == WeightCheck::Fail) fail("{}: the weights are not finite: {}", where, describe());
  std::fprintf(stderr,
               "gpt: warning: %s: the weights are not finite: %s: what the model computes from them is NaN\n",
               std::string(where).c_str(), describe().c_str());
}

std::shared_ptr<const Tokenizer> load_dir_tokenizer(const std::string& dir, const HfConfig& hc,
                                                    const std::string& config_path) {
  std::shared_ptr<const Tokenizer> tok;
  if (hc.chars) {
    try {
      tok = std::make_shared<CharTokenizer>(*hc.chars);
    } catch (const Error& e) {
      fail("{}: gptcpp_chars: {}", config_path, e.what());
    }
  } else {
    for (const char* f : {"vocab.json", "encoder.json", "tokenizer.json", "chars.json"})
      if (file_exists(dir + "/" + f)) {
        tok = load_tokenizer(dir);
        break;
      }
  }
  if (tok && tok->vocab_size() > static_cast<size_t>(hc.model.vocab_size))
    fail("{}: the tokenizer has {} tokens, more than the model's vocab_size {}", dir, tok->vocab_size(),
         hc.model.vocab_size);
  return tok;
}

LoadedModel load_model_dir(const std::string& dir, WeightCheck check) {
  if (!std::filesystem::is_directory(dir)) fail("{}: no such model directory", dir);
  const std::string config_path = dir + "/config.json";
  if (!path_exists(config_path)) fail("{}: no config.json (not a Hugging Face model directory)", dir);
  HfConfig hc = parse_hf_config(read_regular_file(config_path), config_path);
  const ModelConfig& cfg = hc.model;
  if (hc.quant == "q8") {  // int8 matrices (gpt quantize): dequantized to fp32
    PackedModel packed = load_packed_model(dir, std::nullopt, check);
    return {unpack_model(packed), packed.tokenizer};
  }

  std::vector<SafetensorsFile> files = open_weights(dir);
  const std::string mismatch = config_path + " does not match the weights";
  // Everything is matched against the layout first: a config far bigger than the weights fails
  // here, before the model's memory is allocated.
  const std::vector<ParamInfo> layout = parameter_layout(cfg);
  std::map<std::string_view, const ParamInfo*> wanted;
  for (const auto& p : layout) wanted.emplace(p.name, &p);
  std::map<std::string_view, Found> found;  // parameter name -> where it is
  for (const auto& f : files) {
    for (const auto& t : f.tensors()) {
      std::string_view name = strip_prefix(t.name);
      if (is_mask_buffer(name)) continue;
      if (name == "lm_head.weight" && cfg.tied_head) continue;  // tied: the head is wte
      auto w = wanted.find(name);
      if (w == wanted.end())
        fail("{}: unexpected tensor \"{}\" in {} (n_layer {}, bias {}, head {})", mismatch, t.name,
             base_name(f.name()), cfg.n_layer, cfg.bias ? "yes" : "no", cfg.tied_head ? "tied" : "untied");
      auto [it, inserted] = found.emplace(w->first, Found{&f, &t});
      if (!inserted)
        fail("{}: tensor \"{}\" is stored twice (\"{}\" and \"{}\")", dir, name, it->second.tensor->name,
             t.name);
    }
  }
  for (const auto& p : layout) {
    auto it = found.find(p.name);
    if (it == found.end())
      fail("{}: tensor \"{}\" is missing from {}", mismatch, p.name,
           files.size() == 1 ? base_name(files[0].name()) : "the safetensors shards");
    const TensorEntry* t = it->second.tensor;
    if (t->shape != p.shape)
      fail("{}: tensor \"{}\" is {} in {}, the config needs {}", mismatch, t->name, shape_string(t->shape),
           base_name(it->second.file->name()), shape_string(p.shape));
  }
  require_memory(4 * cfg.num_parameters(), fmt::format("the weights of {} ({} parameters, fp32)", dir,
                                                       format_count(cfg.num_parameters())));
  GPT model(cfg);
  FiniteCheck finite;
  for (const auto& p : model.layout()) {
    const auto& [file, t] = found.at(p.name);
    const std::span<float> dst(model.params() + p.offset, p.numel);
    file->read_f32(*t, dst);
    finite.add(p.name, dst, p.shape);
  }
  finite.report(dir, check);

  std::shared_ptr<const Tokenizer> tok = load_dir_tokenizer(dir, hc, config_path);
  return {std::move(model), std::move(tok)};
}

void save_model_dir(const std::string& dir, const GPT& model, const Tokenizer* tok) {
  const ModelConfig& cfg = model.config();
  if (tok && tok->vocab_size() > static_cast<size_t>(cfg.vocab_size))
    fail("cannot save to {}: the tokenizer has {} tokens, more than the model's vocab_size {}", dir,
         tok->vocab_size(), cfg.vocab_size);
  make_dirs(dir);
  // The names GPT2LMHeadModel.save_pretrained writes: "transformer." + body, lm_head.weight only
  // when untied. (Without the prefix, transformers refuses an untied lm_head.weight.)
  std::vector<TensorView> tensors;
  for (const auto& p : model.layout()) {
    std::string name = p.name == "lm_head.weight" ? p.name : std::string(kPrefix) + p.name;
    tensors.push_back({std::move(name), DType::F32, p.shape, model.params() + p.offset});
  }
  write_safetensors(dir + "/model.safetensors", std::move(tensors), {{"format", "pt"}});
  if (tok && tok->kind() != "char") tok->save(dir);
  write_file_atomic(dir + "/config.json", config_to_hf_json(cfg, tok));
}

}  // namespace gpt
