#include "io/model_dir.h"

#include <cstring>
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

namespace {

// The token embedding and an untied head are stored [V, C] (rows); the rest are Conv1D [in, out].
bool stored_as_rows(std::string_view name) { return name == "wte.weight" || name == "lm_head.weight"; }

// (out, in) of a matrix parameter.
std::pair<int, int> matrix_dims(const ParamInfo& p) {
  const int a = static_cast<int>(p.shape[0]), b = static_cast<int>(p.shape[1]);
  return stored_as_rows(p.name) ? std::pair{a, b} : std::pair{b, a};
}

// A q8 matrix of the file: int8 rows [OUT, IN] and its half (or float) scales [OUT, ceil(IN/32)].
ops::PackedMatrix read_q8_matrix(const SafetensorsFile& f, const TensorEntry& t, const TensorEntry& s,
                                 const ParamInfo& p) {
  const auto [out, in] = matrix_dims(p);
  const int nb = (in + ops::kQ8Block - 1) / ops::kQ8Block;
  const std::vector<int64_t> wshape{out, in}, sshape{out, nb};
  if (t.dtype != DType::I8 || t.shape != wshape)
    fail("{}: tensor \"{}\" is {} {}, a q8 model needs I8 {}", f.name(), t.name, to_string(t.dtype),
         shape_string(t.shape), shape_string(wshape));
  if ((s.dtype != DType::F16 && s.dtype != DType::F32) || s.shape != sshape)
    fail("{}: tensor \"{}\" is {} {}, the scales need F16 (or F32) {}", f.name(), s.name, to_string(s.dtype),
         shape_string(s.shape), shape_string(sshape));
  std::vector<uint16_t> scales(s.numel);
  if (s.dtype == DType::F16) {
    std::memcpy(scales.data(), s.data, s.nbytes());
  } else {  // float scales are rounded to half, as the kernels read them
    std::vector<float> fs(s.numel);
    f.read_f32(s, fs);
    for (size_t i = 0; i < fs.size(); i++) scales[i] = f32_to_f16(fs[i]);
  }
  try {
    return ops::PackedMatrix::from_q8_rows(reinterpret_cast<const int8_t*>(t.data), scales.data(), out, in);
  } catch (const Error& e) {
    fail("{}: tensor \"{}\": {}", f.name(), t.name, e.what());
  }
}

// A packed matrix's values in the arena's layout (Conv1D [IN, OUT], or rows).
void unpack_into(const ops::PackedMatrix& w, const ParamInfo& p, float* dst) {
  const auto [out, in] = matrix_dims(p);
  std::vector<float> row(in);
  for (int o = 0; o < out; o++) {
    w.dequantize_row(o, row.data());
    if (stored_as_rows(p.name))
      std::copy(row.begin(), row.end(), dst + static_cast<size_t>(o) * in);
    else
      for (int k = 0; k < in; k++) dst[static_cast<size_t>(k) * out + o] = row[k];
  }
}

}  // namespace

LoadedModel load_model_dir(const std::string& dir, const LoadOptions& opt) {
  if (!std::filesystem::is_directory(dir)) fail("{}: no such model directory", dir);
  const std::string config_path = dir + "/config.json";
  if (!path_exists(config_path)) fail("{}: no config.json (not a Hugging Face model directory)", dir);
  HfConfig hc = parse_hf_config(read_regular_file(config_path), config_path);
  const ModelConfig& cfg = hc.model;
  Backend& be = opt.backend ? *opt.backend : cpu_backend();
  const ops::WeightType stored = hc.quant ? ops::parse_weight_type(*hc.quant) : ops::WeightType::F32;
  if (hc.quant && opt.weights && *opt.weights != stored)
    fail("{} holds {} weights (written by gpt quantize), not {}", dir, *hc.quant, ops::weight_type_name(*opt.weights));
  if (!opt.inference && opt.weights && *opt.weights != ops::WeightType::F32)
    fail("internal error: a model for training has fp32 weights, not {}", ops::weight_type_name(*opt.weights));
  const ops::WeightType type = opt.weights.value_or(stored);
  // Packed for inference where the backend has the kernels; f32 elsewhere stays in training storage.
  const bool packed = opt.inference && (be.kind() == DeviceKind::Cpu || be.kind() == DeviceKind::CpuStaged);
  if (opt.inference && !packed && type != ops::WeightType::F32)
    fail("{} weights run on the cpu backend only, not on {} (use f32 weights there)", ops::weight_type_name(type),
         be.name());

  std::vector<SafetensorsFile> files = open_weights(dir);
  if (stored == ops::WeightType::Q8) {
    const SafetensorsFile& f = files.front();
    if (files.size() != 1) fail("{}: a q8 model is one model.safetensors, not shards", dir);
    if (auto it = f.metadata().find("gptcpp_quant"); it != f.metadata().end() && it->second != "q8")
      fail("{}: metadata says gptcpp_quant \"{}\" but {} says \"q8\"", f.name(), it->second, config_path);
    if (auto it = f.metadata().find("gptcpp_quant_block"); it != f.metadata().end() && it->second != "32")
      fail("{}: q8 block size {} is not supported (only 32)", f.name(), it->second);
  }
  const std::string mismatch = config_path + " does not match the weights";
  // Everything is matched against the layout first: a config far bigger than the weights fails
  // here, before the model's memory is allocated.
  const std::vector<ParamInfo> layout = parameter_layout(cfg);
  std::map<std::string, const ParamInfo*, std::less<>> wanted;
  for (const auto& p : layout) {
    wanted.emplace(p.name, &p);
    if (stored == ops::WeightType::Q8 && is_packed_matrix(p)) wanted.emplace(p.name + ".scales", &p);
  }
  std::map<std::string, Found, std::less<>> found;  // tensor name (no prefix) -> where it is
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
  // In the layout's order, so the first error is the first tensor of the model that is wrong.
  for (const ParamInfo& p : layout) {
    const bool q8_matrix = stored == ops::WeightType::Q8 && is_packed_matrix(p);
    for (const std::string& name : q8_matrix ? std::vector<std::string>{p.name, p.name + ".scales"}
                                             : std::vector<std::string>{p.name}) {
      auto it = found.find(name);
      if (it == found.end())
        fail("{}: tensor \"{}\" is missing from {}", mismatch, name,
             files.size() == 1 ? base_name(files[0].name()) : "the safetensors shards");
      const TensorEntry* t = it->second.tensor;
      if (!q8_matrix && t->shape != p.shape)  // (q8 shapes: read_q8_matrix)
        fail("{}: tensor \"{}\" is {} in {}, the config needs {}", mismatch, t->name, shape_string(t->shape),
             base_name(it->second.file->name()), shape_string(p.shape));
    }
  }
  auto q8 = [&](const ParamInfo& p) {
    const Found& w = found.at(p.name);
    return read_q8_matrix(*w.file, *w.tensor, *found.at(p.name + ".scales").tensor, p);
  };
  // bytes per weight: 4 in fp32, 2 in bf16, about 1 in q8 (the vectors' fp32 left out: a lower bound)
  const size_t per_weight = !packed || type == ops::WeightType::F32 ? 4 : type == ops::WeightType::BF16 ? 2 : 1;
  require_memory(per_weight * cfg.num_parameters(),
                 fmt::format("the weights of {} ({} parameters, {})", dir, format_count(cfg.num_parameters()),
                             packed ? ops::weight_type_name(type) : "fp32"));
  FiniteCheck finite;

  std::shared_ptr<const Tokenizer> tok = load_dir_tokenizer(dir, hc, config_path);
  if (!packed) {  // training storage: every tensor fp32 (q8 matrices dequantized)
    GPT model(cfg, be);
    for (const auto& p : model.layout()) {
      float* dst = model.params() + p.offset;
      if (stored == ops::WeightType::Q8 && is_packed_matrix(p)) {
        unpack_into(q8(p), p, dst);
        continue;
      }
      const auto& [file, t] = found.at(p.name);
      file->read_f32(*t, std::span<float>(dst, p.numel));
      finite.add(p.name, std::span<const float>(dst, p.numel), p.shape);
    }
    finite.report(dir, opt.check);
    return {std::move(model), std::move(tok)};
  }
  // Packed storage: one matrix at a time, straight into its format (q8 as stored, bit for bit).
  GPT model(cfg, be, type);
  std::vector<float> values;
  for (const auto& p : layout) {
    if (!is_packed_matrix(p)) {
      const auto& [file, t] = found.at(p.name);
      const std::span<float> dst(model.param(p.name), p.numel);
      file->read_f32(*t, dst);
      finite.add(p.name, dst, p.shape);
      continue;
    }
    if (stored == ops::WeightType::Q8) {  // int8 values; a scale that is not finite fails in q8()
      model.set_packed_matrix(p.name, q8(p));
      continue;
    }
    const auto& [file, t] = found.at(p.name);
    values.resize(p.numel);
    file->read_f32(*t, values);
    const size_t before = finite.count();
    finite.add(p.name, values, p.shape);
    // Non-finite values cannot be quantized: with check = Fail the whole report comes at the end.
    if (finite.count() != before && opt.check == WeightCheck::Fail) continue;
    model.set_packed_matrix(p.name, pack_parameter(p, values.data(), type));
  }
  finite.report(dir, opt.check);
  return {std::move(model), std::move(tok)};
}

LoadedModel load_model_dir(const std::string& dir, WeightCheck check) {
  LoadOptions opt;
  opt.check = check;
  return load_model_dir(dir, opt);
}

LoadedModel load_for_inference(const std::string& dir, std::string_view device, std::string_view weights,
                               WeightCheck check) {
  LoadOptions opt;
  opt.check = check;
  opt.backend = &backend_for(device);
  opt.inference = true;
  if (!weights.empty()) opt.weights = ops::parse_weight_type(weights);
  return load_model_dir(dir, opt);
}

void save_model_dir(const std::string& dir, const GPT& model, const Tokenizer* tok) {
  const ModelConfig& cfg = model.config();
  if (tok && tok->vocab_size() > static_cast<size_t>(cfg.vocab_size))
    fail("cannot save to {}: the tokenizer has {} tokens, more than the model's vocab_size {}", dir,
         tok->vocab_size(), cfg.vocab_size);
  // The names GPT2LMHeadModel.save_pretrained writes: "transformer." + body, lm_head.weight only
  // when untied. (Without the prefix, transformers refuses an untied lm_head.weight.)
  auto file_name = [](const std::string& name) {
    return name == "lm_head.weight" ? name : std::string(kPrefix) + name;
  };
  std::vector<TensorView> tensors;
  std::map<std::string, std::string> meta{{"format", "pt"}};
  nlohmann::json config = parse_json(config_to_hf_json(cfg, tok), "the model's config");
  std::vector<std::vector<uint8_t>> buffers;  // converted matrices, alive until the file is written
  if (!model.packed()) {
    for (const auto& p : model.layout())
      tensors.push_back({file_name(p.name), DType::F32, p.shape, model.params() + p.offset});
  } else {
    const ops::WeightType type = model.weight_type();
    auto buffer = [&](size_t bytes) {
      buffers.emplace_back(bytes);
      return buffers.back().data();
    };
    for (const ParamInfo& p : parameter_layout(cfg)) {
      const std::string name = file_name(p.name);
      if (!is_packed_matrix(p)) {
        tensors.push_back({name, DType::F32, p.shape, model.param(p.name)});
        continue;
      }
      const PackedWeight* pw = model.packed_matrix(p.name);
      const ops::PackedMatrix* w = pw ? pw->host() : nullptr;
      if (!w) fail("cannot save to {}: matrix \"{}\" is not in host memory", dir, p.name);
      const auto [out, in] = matrix_dims(p);
      const size_t numel = static_cast<size_t>(out) * in;
      if (type == ops::WeightType::Q8) {
        auto* q = reinterpret_cast<int8_t*>(buffer(numel));
        auto* sc = reinterpret_cast<uint16_t*>(buffer(static_cast<size_t>(out) * w->q8_blocks() * 2));
        w->q8_rows(q, sc);
        tensors.push_back({name, DType::I8, {out, in}, q});
        tensors.push_back({name + ".scales", DType::F16, {out, w->q8_blocks()}, sc});
        continue;
      }
      // f32 and bf16 keep the Hugging Face layout, so transformers and load_model_dir read them.
      const size_t es = type == ops::WeightType::BF16 ? 2 : 4;
      auto* rows = buffer(numel * es);
      if (type == ops::WeightType::BF16)
        w->bf16_rows(reinterpret_cast<uint16_t*>(rows));
      else
        w->f32_rows(reinterpret_cast<float*>(rows));
      void* data = rows;
      if (!stored_as_rows(p.name)) {  // [OUT, IN] -> Conv1D [IN, OUT]
        auto* t = buffer(numel * es);
        for (int o = 0; o < out; o++)
          for (int k = 0; k < in; k++)
            std::memcpy(t + (static_cast<size_t>(k) * out + o) * es, rows + (static_cast<size_t>(o) * in + k) * es,
                        es);
        data = t;
      }
      tensors.push_back({name, type == ops::WeightType::BF16 ? DType::BF16 : DType::F32, p.shape, data});
    }
    if (type != ops::WeightType::F32) {
      meta["gptcpp_quant"] = ops::weight_type_name(type);
      config["gptcpp_quant"] = ops::weight_type_name(type);
      if (type == ops::WeightType::Q8) {
        meta["gptcpp_quant_block"] = std::to_string(ops::kQ8Block);
        config["gptcpp_quant_block"] = ops::kQ8Block;
      }
    }
  }
  make_dirs(dir);
  write_safetensors(dir + "/model.safetensors", std::move(tensors), meta);
  if (tok && tok->kind() != "char") tok->save(dir);
  write_file_atomic(dir + "/config.json", config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace gpt
