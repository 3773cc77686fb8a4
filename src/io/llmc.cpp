#include "io/llmc.h"

#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "io/safetensors.h"

namespace gpt {

namespace {

constexpr int32_t kMagic = 20240326;
constexpr int kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);
constexpr int kVocabPadMultiple = 128;

// The per-layer tensors in file order: gpt.cpp name (after "h.N."), and whether the file holds
// it as an nn.Linear weight [out, in] (transposed against gpt.cpp's Conv1D [in, out]).
struct LayerTensor {
  const char* name;
  bool linear;
};
constexpr LayerTensor kLayerOrder[] = {
    {"ln_1.weight", false},      {"ln_1.bias", false},         {"attn.c_attn.weight", true},
    {"attn.c_attn.bias", false}, {"attn.c_proj.weight", true}, {"attn.c_proj.bias", false},
    {"ln_2.weight", false},      {"ln_2.bias", false},         {"mlp.c_fc.weight", true},
    {"mlp.c_fc.bias", false},    {"mlp.c_proj.weight", true},  {"mlp.c_proj.bias", false},
};

// Parameters in the file for a header (wte counted with its padding rows).
uint64_t file_elements(uint64_t V_padded, uint64_t T, uint64_t L, uint64_t C) {
  return V_padded * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
}

// The preset whose shape this is, for display ("custom" if none).
std::string matching_preset(const ModelConfig& c) {
  for (const auto& name : preset_names()) {
    ModelConfig p = preset_config(name);
    if (p.n_layer == c.n_layer && p.n_head == c.n_head && p.n_embd == c.n_embd && p.n_ctx == c.n_ctx &&
        p.vocab_size == c.vocab_size && p.ln == c.ln && p.attention == c.attention)
      return name;
  }
  return "custom";
}

// Reads consecutive elements of the parameter section as float32.
class Reader {
 public:
  Reader(const uint8_t* p, bool bf16) : p_(p), bf16_(bf16) {}
  float at(size_t i) const {
    if (bf16_) {
      uint16_t b;
      std::memcpy(&b, p_ + 2 * (pos_ + i), 2);
      return bf16_to_f32(b);
    }
    float f;
    std::memcpy(&f, p_ + 4 * (pos_ + i), 4);
    return f;
  }
  void copy(float* dst, size_t n) {
    if (!bf16_)
      std::memcpy(dst, p_ + 4 * pos_, 4 * n);
    else
      for (size_t i = 0; i < n; ++i) dst[i] = at(i);
    pos_ += n;
  }
  // A [rows, cols] matrix stored transposed ([cols, rows]) in the file.
  void copy_transposed(float* dst, size_t rows, size_t cols) {
    for (size_t c = 0; c < cols; ++c)
      for (size_t r = 0; r < rows; ++r) dst[r * cols + c] = at(c * rows + r);
    pos_ += rows * cols;
  }
  void skip(size_t n) { pos_ += n; }

 private:
  const uint8_t* p_;
  bool bf16_;
  size_t pos_ = 0;
};

}  // namespace

GPT load_llmc(const std::string& path) {
  MappedFile file = MappedFile::open(path);
  if (file.size() < kHeaderBytes)
    fail("{}: not an llm.c checkpoint: {} bytes, shorter than its {}-byte header", path, file.size(),
         kHeaderBytes);
  int32_t h[kHeaderInts];
  std::memcpy(h, file.data(), kHeaderBytes);
  if (h[0] != kMagic) fail("{}: not an llm.c model checkpoint (magic {}, expected {})", path, h[0], kMagic);
  if (h[1] != 3 && h[1] != 5)
    fail("{}: llm.c checkpoint version {} is not supported (3 = float32 and 5 = bfloat16 are)", path, h[1]);
  const bool bf16 = h[1] == 5;

  ModelConfig cfg;  // llm.c's GPT-2: pre-LN, dense, biases, tied head, eps 1e-5, no dropout
  cfg.n_ctx = h[2];
  cfg.vocab_size = h[3];
  cfg.n_layer = h[4];
  cfg.n_head = h[5];
  cfg.n_embd = h[6];
  cfg.dropout = 0.0f;
  try {
    cfg.validate();
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  const int32_t Vp = h[7];
  if (Vp < cfg.vocab_size || Vp > cfg.vocab_size + (1 << 20))
    fail("{}: padded_vocab_size {} does not fit vocab_size {}", path, Vp, cfg.vocab_size);
  cfg.preset = matching_preset(cfg);

  const uint64_t C = cfg.n_embd, L = cfg.n_layer, V = cfg.vocab_size, T = cfg.n_ctx;
  const uint64_t expect = kHeaderBytes + file_elements(static_cast<uint64_t>(Vp), T, L, C) * (bf16 ? 2 : 4);
  if (file.size() != expect)
    fail(
        "{}: {} bytes, but its header describes {} bytes (n_layer {}, n_embd {}, vocab {} padded to {}, "
        "context {}, {}){}",
        path, file.size(), expect, L, C, V, Vp, T, bf16 ? "bfloat16" : "float32",
        file.size() < expect ? ": truncated?" : "");

  GPT model(cfg);
  Reader r(file.data() + kHeaderBytes, bf16);
  r.copy(model.param("wte.weight"), V * C);
  r.skip((static_cast<uint64_t>(Vp) - V) * C);  // padding rows
  r.copy(model.param("wpe.weight"), T * C);
  for (const auto& t : kLayerOrder) {
    for (int l = 0; l < cfg.n_layer; ++l) {
      const ParamInfo* p = model.find(fmt::format("h.{}.{}", l, t.name));
      float* dst = model.params() + p->offset;
      if (t.linear)
        r.copy_transposed(dst, static_cast<size_t>(p->shape[0]), static_cast<size_t>(p->shape[1]));
      else
        r.copy(dst, p->numel);
    }
  }
  r.copy(model.param("ln_f.weight"), C);
  r.copy(model.param("ln_f.bias"), C);
  return model;
}

void save_llmc(const std::string& path, const GPT& model) {
  const ModelConfig& cfg = model.config();
  std::vector<std::string> why;
  if (cfg.ln != LnPlacement::Pre) why.push_back("post-LN");
  if (cfg.attention != AttentionKind::Dense) why.push_back("banded attention");
  if (!cfg.bias) why.push_back("no biases");
  if (!cfg.tied_head) why.push_back("an untied head");
  if (cfg.ln_eps != 1e-5f) why.push_back(fmt::format("layer_norm_epsilon {}", cfg.ln_eps));
  if (!why.empty())
    fail(
        "cannot write {}: llm.c checkpoints hold only GPT-2's shape (pre-LN, dense attention, biases, tied "
        "head, "
        "layer_norm_epsilon 1e-5); this model has {}",
        path, fmt::join(why, ", "));

  const size_t C = cfg.n_embd, V = cfg.vocab_size, T = cfg.n_ctx;
  const int32_t Vp = (cfg.vocab_size + kVocabPadMultiple - 1) / kVocabPadMultiple * kVocabPadMultiple;
  int32_t h[kHeaderInts] = {};
  h[0] = kMagic;
  h[1] = 3;
  h[2] = cfg.n_ctx;
  h[3] = cfg.vocab_size;
  h[4] = cfg.n_layer;
  h[5] = cfg.n_head;
  h[6] = cfg.n_embd;
  h[7] = Vp;

  AtomicFileWriter w(path);
  w.write(h, kHeaderBytes);
  auto put = [&](const float* x, size_t n) { w.write(x, n * sizeof(float)); };
  put(model.param("wte.weight"), V * C);
  const std::vector<float> zeros((static_cast<size_t>(Vp) - V) * C, 0.0f);
  put(zeros.data(), zeros.size());
  put(model.param("wpe.weight"), T * C);
  std::vector<float> buf;
  for (const auto& t : kLayerOrder) {
    for (int l = 0; l < cfg.n_layer; ++l) {
      const ParamInfo* p = model.find(fmt::format("h.{}.{}", l, t.name));
      const float* src = model.params() + p->offset;
      if (!t.linear) {
        put(src, p->numel);
        continue;
      }
      const auto rows = static_cast<size_t>(p->shape[0]), cols = static_cast<size_t>(p->shape[1]);
      buf.resize(p->numel);  // [in, out] -> [out, in]
      for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) buf[c * rows + r] = src[r * cols + c];
      put(buf.data(), buf.size());
    }
  }
  put(model.param("ln_f.weight"), C);
  put(model.param("ln_f.bias"), C);
  w.commit();
}

}  // namespace gpt
