#include "model/packed_model.h"

#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "io/hf_config.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {

using ops::PackedMatrix;
using ops::WeightType;

namespace {

constexpr std::string_view kPrefix = "transformer.";

// The token embedding and an untied head are stored [V, C] (rows); the rest are Conv1D [in, out].
bool stored_as_rows(std::string_view name) { return name == "wte.weight" || name == "lm_head.weight"; }

// The name save_pretrained gives a parameter.
std::string file_name(const std::string& name) {
  return name == "lm_head.weight" ? name : std::string(kPrefix) + name;
}

// (out, in) of a matrix parameter.
std::pair<int, int> matrix_dims(const ParamInfo& p) {
  const int a = static_cast<int>(p.shape[0]), b = static_cast<int>(p.shape[1]);
  return stored_as_rows(p.name) ? std::pair{a, b} : std::pair{b, a};
}


// A q8 directory: int8 rows [OUT, IN] with half (or float) scales [OUT, ceil(IN/32)] per matrix.
PackedModel read_q8_dir(const std::string& dir, const HfConfig& hc, const std::string& config_path,
                        WeightCheck check) {
  const std::string path = dir + "/model.safetensors";
  if (!file_exists(path)) fail("{}: no model.safetensors", dir);
  const SafetensorsFile f = SafetensorsFile::open(path);
  if (auto it = f.metadata().find("gptcpp_quant"); it != f.metadata().end() && it->second != "q8")
    fail("{}: metadata says gptcpp_quant \"{}\" but {} says \"q8\"", path, it->second, config_path);
  if (auto it = f.metadata().find("gptcpp_quant_block"); it != f.metadata().end() && it->second != "32")
    fail("{}: q8 block size {} is not supported (only 32)", path, it->second);

  PackedModel m;
  m.config = hc.model;
  m.type = WeightType::Q8;
  FiniteCheck finite;
  std::set<std::string_view> used;
  auto find = [&](const std::string& name) -> const TensorEntry* {
    const TensorEntry* t = f.find(file_name(name));
    if (!t) t = f.find(name);
    if (!t) fail("{}: tensor \"{}\" is missing", path, file_name(name));
    used.insert(t->name);
    return t;
  };
  for (const ParamInfo& p : parameter_layout(hc.model)) {
    const TensorEntry* t = find(p.name);
    if (!is_packed_matrix(p)) {
      if (t->shape != p.shape)
        fail("{}: tensor \"{}\" is {}, the config needs {}", path, t->name, shape_string(t->shape),
             shape_string(p.shape));
      std::vector<float> v(p.numel);
      f.read_f32(*t, v);
      finite.add(p.name, v, p.shape);
      m.vectors.emplace(p.name, std::move(v));
      continue;
    }
    const auto [out, in] = matrix_dims(p);
    const int nb = (in + ops::kQ8Block - 1) / ops::kQ8Block;
    const std::vector<int64_t> wshape{out, in}, sshape{out, nb};
    if (t->dtype != DType::I8 || t->shape != wshape)
      fail("{}: tensor \"{}\" is {} {}, a q8 model needs I8 {}", path, t->name, to_string(t->dtype),
           shape_string(t->shape), shape_string(wshape));
    const TensorEntry* s = find(p.name + ".scales");
    if ((s->dtype != DType::F16 && s->dtype != DType::F32) || s->shape != sshape)
      fail("{}: tensor \"{}\" is {} {}, the scales need F16 (or F32) {}", path, s->name, to_string(s->dtype),
           shape_string(s->shape), shape_string(sshape));
    std::vector<uint16_t> scales(s->numel);
    if (s->dtype == DType::F16) {
      std::memcpy(scales.data(), s->data, s->nbytes());
    } else {  // float scales are rounded to half, as the kernels read them
      std::vector<float> fs(s->numel);
      f.read_f32(*s, fs);
      for (size_t i = 0; i < fs.size(); i++) scales[i] = f32_to_f16(fs[i]);
    }
    try {
      m.matrices.emplace(p.name, PackedMatrix::from_q8_rows(reinterpret_cast<const int8_t*>(t->data),
                                                            scales.data(), out, in));
    } catch (const Error& e) {
      fail("{}: tensor \"{}\": {}", path, t->name, e.what());
    }
  }
  for (const auto& t : f.tensors())
    if (!used.contains(t.name))
      fail("{}: unexpected tensor \"{}\" (n_layer {}, bias {}, head {})", path, t.name, hc.model.n_layer,
           hc.model.bias ? "yes" : "no", hc.model.tied_head ? "tied" : "untied");
  finite.report(dir, check);  // (a q8 scale that is not finite is an error above)
  m.tokenizer = load_dir_tokenizer(dir, hc, config_path);
  return m;
}

}  // namespace

bool is_packed_matrix(const ParamInfo& p) { return p.shape.size() == 2 && p.name != "wpe.weight"; }

const PackedMatrix& PackedModel::matrix(std::string_view name) const {
  auto it = matrices.find(name);
  if (it == matrices.end()) fail("the packed model has no matrix \"{}\"", name);
  return it->second;
}

const float* PackedModel::vector(std::string_view name) const {
  auto it = vectors.find(name);
  return it == vectors.end() ? nullptr : it->second.data();
}

const PackedMatrix& PackedModel::lm_head() const {
  return matrix(config.tied_head ? "wte.weight" : "lm_head.weight");
}

size_t PackedModel::bytes() const {
  size_t n = 0;
  for (const auto& [name, m] : matrices) n += m.bytes();
  for (const auto& [name, v] : vectors) n += v.size() * sizeof(float);
  return n;
}

PackedModel pack_model(const GPT& model, WeightType type, std::shared_ptr<const Tokenizer> tokenizer) {
  // The packed weights are the base's: attached adapters would silently be lost.
  if (model.lora())
    fail("the model has LoRA adapters attached: merge them first (merge_lora, gpt lora merge)");
  PackedModel m;
  m.config = model.config();
  m.type = type;
  m.tokenizer = std::move(tokenizer);
  for (const ParamInfo& p : model.layout()) {
    const float* src = model.params() + p.offset;
    if (!is_packed_matrix(p)) {
      m.vectors.emplace(p.name, std::vector<float>(src, src + p.numel));
      continue;
    }
    const auto [out, in] = matrix_dims(p);
    m.matrices.emplace(p.name, stored_as_rows(p.name) ? PackedMatrix::from_rows(src, out, in, type)
                                                      : PackedMatrix::from_conv1d(src, in, out, type));
  }
  return m;
}

GPT unpack_model(const PackedModel& m) {
  GPT g(m.config);
  std::vector<float> row;
  for (const ParamInfo& p : g.layout()) {
    float* dst = g.params() + p.offset;
    if (!is_packed_matrix(p)) {
      auto it = m.vectors.find(p.name);
      if (it == m.vectors.end() || it->second.size() != p.numel)
        fail("the packed model has no tensor \"{}\" of {} values", p.name, p.numel);
      std::copy(it->second.begin(), it->second.end(), dst);
      continue;
    }
    const PackedMatrix& w = m.matrix(p.name);
    const auto [out, in] = matrix_dims(p);
    if (w.out() != out || w.in() != in)
      fail("matrix \"{}\" is {}x{}, the config needs {}x{}", p.name, w.out(), w.in(), out, in);
    row.resize(in);
    for (int o = 0; o < out; o++) {
      w.dequantize_row(o, row.data());
      if (stored_as_rows(p.name))
        std::copy(row.begin(), row.end(), dst + static_cast<size_t>(o) * in);
      else
        for (int k = 0; k < in; k++) dst[static_cast<size_t>(k) * out + o] = row[k];
    }
  }
  return g;
}

PackedModel load_packed_model(const std::string& dir, std::optional<WeightType> type, WeightCheck check) {
  if (!std::filesystem::is_directory(dir)) fail("{}: no such model directory", dir);
  const std::string config_path = dir + "/config.json";
  if (!path_exists(config_path)) fail("{}: no config.json (not a Hugging Face model directory)", dir);
  const HfConfig hc = parse_hf_config(read_regular_file(config_path), config_path);
  if (hc.quant) {
    const WeightType qt = ops::parse_weight_type(*hc.quant);
    if (type && *type != qt)
      fail("{} holds {} weights (written by gpt quantize), not {}", dir, *hc.quant,
           ops::weight_type_name(*type));
    if (qt == WeightType::Q8) return read_q8_dir(dir, hc, config_path, check);
  }
  // A plain directory, or a bf16 one: an ordinary Hugging Face directory that converts exactly.
  LoadedModel lm = load_model_dir(dir, check);
  return pack_model(lm.model, type.value_or(hc.quant ? ops::parse_weight_type(*hc.quant) : WeightType::F32),
                    std::move(lm.tokenizer));
}

void save_packed_model(const std::string& dir, const PackedModel& m) {
  const ModelConfig& cfg = m.config;
  const Tokenizer* tok = m.tokenizer.get();
  if (tok && tok->vocab_size() > static_cast<size_t>(cfg.vocab_size))
    fail("cannot save to {}: the tokenizer has {} tokens, more than the model's vocab_size {}", dir,
         tok->vocab_size(), cfg.vocab_size);
  // Every tensor converted to its file form first (buffers live until the file is written).
  std::vector<TensorView> tensors;
  std::vector<std::vector<uint8_t>> buffers;
  auto buffer = [&](size_t bytes) {
    buffers.emplace_back(bytes);
    return buffers.back().data();
  };
  for (const ParamInfo& p : parameter_layout(cfg)) {
    const std::string name = file_name(p.name);
    if (!is_packed_matrix(p)) {
      const float* v = m.vector(p.name);
      if (!v || m.vectors.find(p.name)->second.size() != p.numel)
        fail("cannot save to {}: the packed model has no tensor \"{}\" of {} values", dir, p.name, p.numel);
      tensors.push_back({name, DType::F32, p.shape, v});
      continue;
    }
    const PackedMatrix& w = m.matrix(p.name);
    const auto [out, in] = matrix_dims(p);
    if (w.out() != out || w.in() != in || w.type() != m.type)
      fail("cannot save to {}: matrix \"{}\" is {} {}x{}, the model needs {} {}x{}", dir, p.name,
           ops::weight_type_name(w.type()), w.out(), w.in(), ops::weight_type_name(m.type), out, in);
    const size_t numel = static_cast<size_t>(out) * in;
    if (m.type == WeightType::Q8) {
      auto* q = reinterpret_cast<int8_t*>(buffer(numel));
      auto* s = reinterpret_cast<uint16_t*>(buffer(static_cast<size_t>(out) * w.q8_blocks() * 2));
      w.q8_rows(q, s);
      tensors.push_back({name, DType::I8, {out, in}, q});
      tensors.push_back({name + ".scales", DType::F16, {out, w.q8_blocks()}, s});
      continue;
    }
    // f32 and bf16 keep the Hugging Face layout, so transformers and load_model_dir read them.
    const size_t es = m.type == WeightType::BF16 ? 2 : 4;
    auto* rows = buffer(numel * es);
    if (m.type == WeightType::BF16)
      w.bf16_rows(reinterpret_cast<uint16_t*>(rows));
    else
      w.f32_rows(reinterpret_cast<float*>(rows));
    void* data = rows;
    if (!stored_as_rows(p.name)) {  // [OUT, IN] -> Conv1D [IN, OUT]
      auto* t = buffer(numel * es);
      for (int o = 0; o < out; o++)
        for (int k = 0; k < in; k++)
          std::memcpy(t + (static_cast<size_t>(k) * out + o) * es,
                      rows + (static_cast<size_t>(o) * in + k) * es, es);
      data = t;
    }
    tensors.push_back({name, m.type == WeightType::BF16 ? DType::BF16 : DType::F32, p.shape, data});
  }
  std::map<std::string, std::string> meta{{"format", "pt"}};
  nlohmann::json config = parse_json(config_to_hf_json(cfg, tok), "the model's config");
  if (m.type != WeightType::F32) {
    meta["gptcpp_quant"] = ops::weight_type_name(m.type);
    config["gptcpp_quant"] = ops::weight_type_name(m.type);
    if (m.type == WeightType::Q8) {
      meta["gptcpp_quant_block"] = std::to_string(ops::kQ8Block);
      config["gptcpp_quant_block"] = ops::kQ8Block;
    }
  }
  make_dirs(dir);
  write_safetensors(dir + "/model.safetensors", std::move(tensors), meta);
  if (tok && tok->kind() != "char") tok->save(dir);
  write_file_atomic(dir + "/config.json",
                    config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace gpt
