// Packed inference weights: every kernel table this CPU can run against a double-precision
// reference over the dequantized weights, the quantization error bounds, the file formats (bit-exact
// round trips, a bf16 directory that load_model_dir reads, clear errors for damaged files).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/cpu.h"
#include "core/error.h"
#include "core/io.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "ops/cpu/packed_kernels.h"
#include "ops/packed.h"
#include "test_util.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {
namespace {

using ops::PackedMatrix;
using ops::WeightType;

constexpr WeightType kTypes[] = {WeightType::F32, WeightType::BF16, WeightType::Q8};

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) : path(test::temp_dir(name)) {}
  ~TempDir() { std::filesystem::remove_all(path); }
};

// The kernel tables this CPU can execute (the dispatched one among them).
std::vector<const ops::cpu::PackedKernels*> runnable_tables() {
  const CpuFeatures& f = cpu();
  std::vector<const ops::cpu::PackedKernels*> t{&ops::cpu::packed_scalar};
  if (f.avx2) t.push_back(&ops::cpu::packed_avx2);
  if (f.level() == "avx512") t.push_back(&ops::cpu::packed_avx512);
  if (f.level() == "avx512" && f.avx512bf16 && f.avx512vnni) t.push_back(&ops::cpu::packed_avx512bf16);
  return t;
}

std::vector<float> random_vector(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> dequantized(const PackedMatrix& m) {
  std::vector<float> w(static_cast<size_t>(m.out()) * m.in());
  for (int r = 0; r < m.out(); r++) m.dequantize_row(r, w.data() + static_cast<size_t>(r) * m.in());
  return w;
}

// x as the kernels see it, computed here independently: bf16 rounds each value; q8 quantizes
// blocks of 32 to round(x * 127/max|x|) with scale max|x|/127.
std::vector<float> as_seen(const std::vector<float>& x, int N, int in, WeightType t) {
  std::vector<float> out = x;
  if (t == WeightType::BF16)
    for (auto& v : out) v = bf16_to_f32(f32_to_bf16(v));
  if (t == WeightType::Q8)
    for (int n = 0; n < N; n++)
      for (int k0 = 0; k0 < in; k0 += 32) {
        float* b = out.data() + static_cast<size_t>(n) * in + k0;
        const int len = std::min(32, in - k0);
        float amax = 0;
        for (int k = 0; k < len; k++) amax = std::max(amax, std::fabs(b[k]));
        for (int k = 0; k < len; k++)
          b[k] = amax > 0 ? std::nearbyint(b[k] * (127.0f / amax)) * (amax / 127.0f) : 0.0f;
      }
  return out;
}

TEST(Packed, WeightTypeNames) {
  for (WeightType t : kTypes) EXPECT_EQ(ops::parse_weight_type(ops::weight_type_name(t)), t);
  EXPECT_THROW(ops::parse_weight_type("int8"), Error);
  EXPECT_THROW(ops::parse_weight_type(""), Error);
}

// Every table, type, odd shape and row count, with and without bias, against double precision.
TEST(Packed, LinearMatchesReference) {
  const std::pair<int, int> shapes[] = {{1, 1},    {5, 3},   {33, 17}, {64, 48}, {40, 130},
                                        {100, 31}, {96, 16}, {600, 21}};  // 600: two spans in a prefill
  const int rows[] = {1, 2, 3, 7, 64, 130};
  for (const auto* table : runnable_tables()) {
    for (WeightType t : kTypes) {
      for (auto [in, out] : shapes) {
        const auto w = random_vector(static_cast<size_t>(out) * in, 0.05f, in * 31 + out);
        const auto bias = random_vector(out, 0.5f, 7);
        const PackedMatrix m = PackedMatrix::from_rows(w.data(), out, in, t);
        ASSERT_EQ(m.type(), t);
        ASSERT_EQ(m.out(), out);
        ASSERT_EQ(m.in(), in);
        const auto wd = dequantized(m);
        for (int N : rows) {
          const auto x = random_vector(static_cast<size_t>(N) * in, 1.0f, N * 1000 + in);
          const auto xs = as_seen(x, N, in, t);
          for (bool with_bias : {false, true}) {
            std::vector<float> y(static_cast<size_t>(N) * out, NAN);
            ops::cpu::packed_linear_using(*table, y.data(), x.data(), m, with_bias ? bias.data() : nullptr,
                                          N);
            for (int n = 0; n < N; n++)
              for (int o = 0; o < out; o++) {
                double ref = with_bias ? bias[o] : 0.0, mag = std::fabs(ref), exact = ref, err_x = 0;
                for (int k = 0; k < in; k++) {
                  const double wk = wd[static_cast<size_t>(o) * in + k];
                  const double xk = xs[static_cast<size_t>(n) * in + k],
                               x0 = x[static_cast<size_t>(n) * in + k];
                  ref += xk * wk;
                  mag += std::fabs(xk * wk);
                  exact += x0 * wk;
                  err_x += std::fabs((x0 - xk) * wk);
                }
                const float got = y[static_cast<size_t>(n) * out + o];
                // The product of what the kernel sees, to fp32 accumulation error...
                ASSERT_NEAR(got, ref, 2e-6 * mag + 1e-6)
                    << table->level << " " << ops::weight_type_name(t) << " in " << in << " out " << out
                    << " N " << N << " n " << n << " o " << o;
                // ...and within the activation rounding of the true product of x.
                ASSERT_NEAR(got, exact, err_x + 2e-6 * mag + 1e-6);
              }
          }
        }
      }
    }
  }
}

// A row's result does not depend on the rows computed with it (decode vs. prefill): a KV-cache
// decoder gets the same logits one token at a time as all at once, up to fp32 summation order.
TEST(Packed, RowsIndependentOfBatch) {
  const int in = 96, out = 70, N = 40;
  const auto w = random_vector(static_cast<size_t>(out) * in, 0.05f, 3);
  const auto x = random_vector(static_cast<size_t>(N) * in, 1.0f, 4);
  for (WeightType t : kTypes) {
    const PackedMatrix m = PackedMatrix::from_rows(w.data(), out, in, t);
    std::vector<float> all(static_cast<size_t>(N) * out), one(out);
    ops::packed_linear(all.data(), x.data(), m, nullptr, N);
    for (int n = 0; n < N; n++) {
      ops::packed_linear(one.data(), x.data() + static_cast<size_t>(n) * in, m, nullptr, 1);
      for (int o = 0; o < out; o++) ASSERT_NEAR(one[o], all[static_cast<size_t>(n) * out + o], 1e-5f);
    }
  }
}

TEST(Packed, Bf16RoundingBound) {
  const int out = 37, in = 45;
  auto w = random_vector(static_cast<size_t>(out) * in, 1.0f, 11);
  w[0] = 0.0f;
  w[1] = 1.0f + 1.0f / 256;  // a tie: rounds to even (1.0)
  w[2] = -3.5e-30f;
  const PackedMatrix m = PackedMatrix::from_rows(w.data(), out, in, WeightType::BF16);
  const auto d = dequantized(m);
  for (size_t i = 0; i < w.size(); i++) {
    EXPECT_LE(std::fabs(d[i] - w[i]), std::ldexp(std::fabs(w[i]), -8)) << i;
    uint32_t bits;
    std::memcpy(&bits, &d[i], 4);
    EXPECT_EQ(bits & 0xffff, 0u) << "not a bfloat16 value at " << i;
  }
  EXPECT_EQ(d[1], 1.0f);
  EXPECT_EQ(m.bytes(), 48u * 64 * 2);  // OUT padded to 48, IN to 64
}

TEST(Packed, Q8QuantizationBound) {
  const int out = 21, in = 75;  // three blocks per row, the last one of 11 inputs
  auto w = random_vector(static_cast<size_t>(out) * in, 0.1f, 12);
  for (int k = 32; k < 64; k++) w[in + k] = 0.0f;  // an all-zero block
  w[2 * in + 5] = 40.0f;                           // an outlier widens its block only
  const PackedMatrix m = PackedMatrix::from_rows(w.data(), out, in, WeightType::Q8);
  ASSERT_EQ(m.q8_blocks(), 3);
  std::vector<int8_t> q(static_cast<size_t>(out) * in);
  std::vector<uint16_t> s(static_cast<size_t>(out) * 3);
  m.q8_rows(q.data(), s.data());
  const auto d = dequantized(m);
  for (int r = 0; r < out; r++)
    for (int b = 0; b < 3; b++) {
      const float scale = f16_to_f32(s[r * 3 + b]);
      float amax = 0;
      for (int k = b * 32; k < std::min(in, b * 32 + 32); k++)
        amax = std::max(amax, std::fabs(w[r * in + k]));
      EXPECT_NEAR(scale, amax / 127, amax / 127 * 1e-3 + 1e-7) << r << " " << b;  // half rounding only
      for (int k = b * 32; k < std::min(in, b * 32 + 32); k++) {
        const size_t i = static_cast<size_t>(r) * in + k;
        EXPECT_LE(std::fabs(d[i] - w[i]), scale / 2 * (1 + 1e-6f)) << r << " " << k;
        EXPECT_GE(q[i], -127);
        EXPECT_EQ(d[i], q[i] * scale);
      }
    }
  EXPECT_EQ(s[1 * 3 + 1], 0);  // the zero block
  EXPECT_NEAR(d[2 * in + 5], 40.0f, f16_to_f32(s[2 * 3]) / 2);
  // The outlier does not spoil the other blocks of its row.
  EXPECT_LT(f16_to_f32(s[2 * 3 + 1]), 0.01f);
}

TEST(Packed, DequantizeRowAndConv1dLayout) {
  const int in = 50, out = 19;
  const auto conv = random_vector(static_cast<size_t>(in) * out, 0.3f, 13);  // [IN, OUT]
  std::vector<float> rows(static_cast<size_t>(out) * in);
  for (int o = 0; o < out; o++)
    for (int k = 0; k < in; k++) rows[o * in + k] = conv[k * out + o];
  for (WeightType t : kTypes) {
    const PackedMatrix a = PackedMatrix::from_conv1d(conv.data(), in, out, t);
    const PackedMatrix b = PackedMatrix::from_rows(rows.data(), out, in, t);
    const auto da = dequantized(a), db = dequantized(b);
    EXPECT_EQ(da, db) << ops::weight_type_name(t);
    for (size_t i = 0; i < rows.size(); i++) {
      if (t == WeightType::F32) {
        ASSERT_EQ(da[i], rows[i]);
      } else if (t == WeightType::BF16) {
        ASSERT_EQ(da[i], bf16_to_f32(f32_to_bf16(rows[i])));
      }
    }
  }
  const PackedMatrix m = PackedMatrix::from_rows(rows.data(), out, in, WeightType::F32);
  EXPECT_THROW(m.dequantize_row(out, rows.data()), Error);
  EXPECT_THROW(PackedMatrix::from_rows(rows.data(), 0, in, WeightType::Q8), Error);
  std::vector<float> bad = rows;
  bad[3] = NAN;
  EXPECT_THROW(PackedMatrix::from_rows(bad.data(), out, in, WeightType::Q8), Error);
}

TEST(Packed, MoveOnly) {
  const auto w = random_vector(64, 1.0f, 1);
  PackedMatrix a = PackedMatrix::from_rows(w.data(), 8, 8, WeightType::Q8);
  const size_t bytes = a.bytes();
  PackedMatrix b = std::move(a);
  EXPECT_EQ(b.bytes(), bytes);
  EXPECT_EQ(b.out(), 8);
  PackedMatrix c;
  c = std::move(b);
  EXPECT_EQ(c.type(), WeightType::Q8);
  std::vector<float> r(8);
  c.dequantize_row(7, r.data());
  EXPECT_NEAR(r[7], w[63], 0.05f);
}

// ---- models and directories -------------------------------------------------------------------

ModelConfig small_config(bool bias, bool tied, int vocab = 50257) {
  ModelConfig c;
  c.preset = "tiny";
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 40;  // not a multiple of 32: padded blocks
  c.n_ctx = 16;
  c.vocab_size = vocab;  // GPT-2's by default, for its tokenizer files; OUT = 16 * 3141 + 1
  c.bias = bias;
  c.tied_head = tied;
  return c;
}

GPT random_model(const ModelConfig& cfg) {
  GPT g(cfg);
  g.init_gpt2(5);
  auto noise = random_vector(g.num_parameters(), 0.01f, 9);
  for (size_t i = 0; i < g.num_parameters(); i++) g.params()[i] += noise[i];  // biases, LN not trivial
  return g;
}

// A copy of g with its matrices packed in t.
GPT packed(const GPT& g, WeightType t) {
  GPT p(g.config());
  std::memcpy(p.params(), g.params(), g.num_parameters() * sizeof(float));
  p.pack(t);
  return p;
}

// A packed matrix by name, as the CPU holds it.
const PackedMatrix& matrix(const GPT& m, const std::string& name) {
  const PackedWeight* w = m.packed_matrix(name);
  if (!w || !w->host()) throw Error("no packed matrix " + name);
  return *w->host();
}

LoadedModel load_packed(const std::string& dir, std::optional<WeightType> t = std::nullopt) {
  LoadOptions opt;
  opt.inference = true;
  opt.weights = t;
  return load_model_dir(dir, opt);
}

// Two packed models hold the same weights: every matrix bit for bit, every vector the same.
void expect_same(const GPT& a, const GPT& b) {
  ASSERT_TRUE(a.packed() && b.packed());
  EXPECT_EQ(a.weight_type(), b.weight_type());
  EXPECT_EQ(a.config().n_layer, b.config().n_layer);
  EXPECT_EQ(a.config().n_embd, b.config().n_embd);
  EXPECT_EQ(a.config().tied_head, b.config().tied_head);
  EXPECT_EQ(a.config().bias, b.config().bias);
  ASSERT_EQ(a.num_parameters(), b.num_parameters());
  EXPECT_EQ(std::memcmp(a.params(), b.params(), a.num_parameters() * sizeof(float)), 0);  // the vectors
  size_t matrices = 0;
  for (const ParamInfo& p : parameter_layout(a.config())) {
    if (!is_packed_matrix(p)) continue;
    const PackedMatrix& m = matrix(a, p.name);
    const PackedMatrix& n = matrix(b, p.name);
    ASSERT_EQ(m.bytes(), n.bytes()) << p.name;
    EXPECT_EQ(std::memcmp(m.data(), n.data(), m.bytes()), 0) << p.name;  // storage bit for bit
    matrices++;
  }
  EXPECT_GT(matrices, 0u);
}

TEST(Packed, ModelSaveLoadRoundTrip) {
  std::vector<std::string> chars;
  for (char c = 'a'; c <= 'z'; c++) chars.push_back(std::string(1, c));
  const auto char_tok = std::make_shared<CharTokenizer>(chars);
  for (bool bias : {true, false})
    for (bool tied : {true, false})
      for (WeightType t : kTypes) {
        // GPT-2's vocabulary (its files written and read) once per type, else a small one.
        const bool bpe = bias && tied;
        const ModelConfig cfg = small_config(bias, tied, bpe ? 50257 : 97);
        const GPT g = random_model(cfg);
        const std::shared_ptr<const Tokenizer> tok =
            bpe ? gpt2_tokenizer() : std::static_pointer_cast<const Tokenizer>(char_tok);
        const GPT pm = packed(g, t);
        size_t matrices = 0;
        for (const ParamInfo& p : g.layout()) matrices += is_packed_matrix(p);
        EXPECT_EQ(matrices, 4u * cfg.n_layer + (tied ? 1 : 2));
        EXPECT_EQ(pm.packed_matrix("lm_head.weight") != nullptr, !tied);
        EXPECT_EQ(pm.find("h.0.attn.c_attn.bias") != nullptr, bias);
        EXPECT_EQ(pm.packed_matrix("h.9.mlp.c_fc.weight"), nullptr);
        if (t != WeightType::F32) {
          EXPECT_LT(pm.weight_bytes(), g.weight_bytes());
        }
        TempDir dir(std::string("packed_rt_") + ops::weight_type_name(t));
        save_model_dir(dir.path, pm, tok.get());
        const LoadedModel back = load_packed(dir.path);
        expect_same(pm, back.model);
        ASSERT_TRUE(back.tokenizer);
        EXPECT_EQ(back.tokenizer->kind(), bpe ? "bpe" : "char");
        EXPECT_EQ(back.tokenizer->vocab_size(), bpe ? 50257u : 26u);
        EXPECT_NO_THROW(load_packed(dir.path, t));
        if (t != WeightType::F32) {
          const WeightType other = t == WeightType::Q8 ? WeightType::BF16 : WeightType::Q8;
          EXPECT_THROW(load_packed(dir.path, other), Error);
        }
        // Every path to fp32 agrees: load_model_dir reads bf16 and q8 directories into training
        // storage as the packed matrices' dequantized values, and the vectors as they are.
        const GPT loaded = load_model_dir(dir.path).model;
        ASSERT_FALSE(loaded.packed());
        ASSERT_EQ(g.num_parameters(), loaded.num_parameters());
        for (const ParamInfo& p : loaded.layout()) {
          const float* got = loaded.params() + p.offset;
          if (!is_packed_matrix(p)) {
            ASSERT_EQ(std::memcmp(got, g.params() + p.offset, p.numel * 4), 0) << p.name;
            continue;
          }
          const PackedMatrix& m = matrix(pm, p.name);
          std::vector<float> row(m.in());
          const bool conv1d = p.name != "wte.weight" && p.name != "lm_head.weight";  // [IN, OUT]
          for (int o = 0; o < m.out(); o++) {
            m.dequantize_row(o, row.data());
            for (int k = 0; k < m.in(); k++)
              ASSERT_EQ(got[conv1d ? static_cast<size_t>(k) * m.out() + o : static_cast<size_t>(o) * m.in() + k],
                        row[k])
                  << p.name << " (" << o << ", " << k << ")";
          }
        }
      }
}

// A plain directory packs on load as f32, or as the type asked for.
TEST(Packed, PlainDirectoryPacksOnLoad) {
  const GPT g = random_model(small_config(true, true));
  TempDir dir("packed_plain");
  save_model_dir(dir.path, g, nullptr);
  const LoadedModel f = load_packed(dir.path);
  EXPECT_EQ(f.model.weight_type(), WeightType::F32);
  EXPECT_FALSE(f.tokenizer);
  expect_same(f.model, packed(g, WeightType::F32));
  expect_same(load_packed(dir.path, WeightType::Q8).model, packed(g, WeightType::Q8));
  // wte's rows are the embeddings, exactly, in f32.
  std::vector<float> row(40);
  matrix(f.model, "wte.weight").dequantize_row(50256, row.data());
  EXPECT_EQ(std::memcmp(row.data(), g.param("wte.weight") + 50256 * 40, 40 * 4), 0);
}

// bf16 directories are ordinary Hugging Face directories: BF16 matrices in their usual layout.
TEST(Packed, Bf16DirectoryIsOrdinary) {
  const GPT g = random_model(small_config(true, true));
  TempDir dir("packed_bf16");
  save_model_dir(dir.path, packed(g, WeightType::BF16), nullptr);
  const SafetensorsFile f = SafetensorsFile::open(dir.path + "/model.safetensors");
  EXPECT_EQ(f.metadata().at("gptcpp_quant"), "bf16");
  const TensorEntry* w = f.find("transformer.h.1.mlp.c_fc.weight");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->dtype, DType::BF16);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{40, 160}));  // Conv1D [in, out]
  EXPECT_EQ(f.find("transformer.wte.weight")->dtype, DType::BF16);
  EXPECT_EQ(f.find("transformer.h.1.mlp.c_fc.bias")->dtype, DType::F32);
  EXPECT_EQ(f.find("transformer.wpe.weight")->dtype, DType::F32);
  const auto cfg = nlohmann::json::parse(read_file(dir.path + "/config.json"));
  EXPECT_EQ(cfg["gptcpp_quant"], "bf16");
  const GPT back = load_model_dir(dir.path).model;
  for (const ParamInfo& p : g.layout())
    for (size_t i = 0; i < p.numel; i++) {
      const float v = g.params()[p.offset + i];
      ASSERT_EQ(back.params()[p.offset + i], is_packed_matrix(p) ? bf16_to_f32(f32_to_bf16(v)) : v) << p.name;
    }
}

TEST(Packed, Q8DirectoryLayout) {
  const GPT g = random_model(small_config(true, false));
  const GPT pm = packed(g, WeightType::Q8);
  TempDir dir("packed_q8");
  save_model_dir(dir.path, pm, nullptr);
  const SafetensorsFile f = SafetensorsFile::open(dir.path + "/model.safetensors");
  EXPECT_EQ(f.metadata().at("gptcpp_quant"), "q8");
  EXPECT_EQ(f.metadata().at("gptcpp_quant_block"), "32");
  const TensorEntry* w = f.find("transformer.h.0.attn.c_attn.weight");
  const TensorEntry* s = f.find("transformer.h.0.attn.c_attn.weight.scales");
  ASSERT_TRUE(w && s);
  EXPECT_EQ(w->dtype, DType::I8);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{120, 40}));  // [OUT, IN]
  EXPECT_EQ(s->dtype, DType::F16);
  EXPECT_EQ(s->shape, (std::vector<int64_t>{120, 2}));  // 40 inputs: blocks of 32 and 8
  EXPECT_TRUE(f.find("lm_head.weight") && f.find("lm_head.weight.scales"));
  // Element (o, k) of the file is the conv1d weight [k, o] quantized.
  const float* conv = g.param("h.0.attn.c_attn.weight");
  for (int o = 0; o < 120; o++)
    for (int k = 0; k < 40; k++) {
      const float scale = f16_to_f32(reinterpret_cast<const uint16_t*>(s->data)[o * 2 + k / 32]);
      const int q = reinterpret_cast<const int8_t*>(w->data)[o * 40 + k];
      ASSERT_LE(std::fabs(q * scale - conv[k * 120 + o]), scale / 2 * (1 + 1e-6f));
    }
  const auto cfg = nlohmann::json::parse(read_file(dir.path + "/config.json"));
  EXPECT_EQ(cfg["gptcpp_quant"], "q8");
  EXPECT_EQ(cfg["gptcpp_quant_block"], 32);
}

// Rewrites DIR/model.safetensors with one tensor changed (or removed, when data is null).
void rewrite_tensor(const std::string& dir, const std::string& name, DType dtype, std::vector<int64_t> shape,
                    const void* data) {
  const std::string path = dir + "/model.safetensors";
  const std::string bytes = read_file(path);
  const SafetensorsFile f = SafetensorsFile::parse(bytes, path);
  std::vector<TensorView> views;
  for (const auto& t : f.tensors())
    if (t.name != name) views.push_back({t.name, t.dtype, t.shape, t.data});
  if (data) views.push_back({name, dtype, std::move(shape), data});
  write_safetensors(path, views, f.metadata());
}

void expect_error(const std::string& dir, const std::string& needle) {
  try {
    load_packed(dir);
    FAIL() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Packed, BadQ8Files) {
  const GPT g = random_model(small_config(true, true));
  const GPT pm = packed(g, WeightType::Q8);
  const std::string w = "transformer.h.1.mlp.c_proj.weight";  // [OUT 40, IN 160]
  std::vector<float> f32(40 * 160, 0.5f);
  std::vector<int8_t> i8(160 * 40, 1);
  std::vector<uint16_t> f16(40 * 5, 0x3c00);
  {
    TempDir dir("packed_bad_dtype");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, w, DType::F32, {40, 160}, f32.data());
    expect_error(dir.path, "a q8 model needs I8 [40, 160]");
  }
  {
    TempDir dir("packed_bad_shape");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, w, DType::I8, {160, 40}, i8.data());  // the Conv1D shape: not what q8 stores
    expect_error(dir.path, "I8 [160, 40]");
  }
  {
    TempDir dir("packed_no_scales");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, w + ".scales", DType::F16, {}, nullptr);
    expect_error(dir.path, "h.1.mlp.c_proj.weight.scales\" is missing");
  }
  {
    TempDir dir("packed_bad_scales");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, w + ".scales", DType::F16, {40, 4}, f16.data());
    expect_error(dir.path, "the scales need F16 (or F32) [40, 5]");
  }
  {
    TempDir dir("packed_i8_scales");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, w + ".scales", DType::I8, {40, 5}, i8.data());
    expect_error(dir.path, "is I8 [40, 5]");
  }
  {
    TempDir dir("packed_missing");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, "transformer.ln_f.bias", DType::F32, {}, nullptr);
    expect_error(dir.path, "\"ln_f.bias\" is missing");
  }
  {
    TempDir dir("packed_extra");
    save_model_dir(dir.path, pm, nullptr);
    rewrite_tensor(dir.path, "transformer.h.7.attn.c_attn.weight", DType::F32, {40, 4}, f32.data());
    expect_error(dir.path, "unexpected tensor \"transformer.h.7.attn.c_attn.weight\"");
  }
  {
    TempDir dir("packed_minus128");
    save_model_dir(dir.path, pm, nullptr);
    std::vector<int8_t> q(40 * 160, -128);
    rewrite_tensor(dir.path, w, DType::I8, {40, 160}, q.data());
    expect_error(dir.path, "-128");
  }
  {  // float scales (another writer's choice) are accepted, rounded to half as the kernels use them
    TempDir dir("packed_f32_scales");
    save_model_dir(dir.path, pm, nullptr);
    std::vector<int8_t> q(40 * 160);
    std::vector<uint16_t> h(40 * 5);
    matrix(pm, "h.1.mlp.c_proj.weight").q8_rows(q.data(), h.data());
    std::vector<float> fs(h.size());
    for (size_t i = 0; i < h.size(); i++) fs[i] = f16_to_f32(h[i]);
    rewrite_tensor(dir.path, w + ".scales", DType::F32, {40, 5}, fs.data());
    expect_same(load_packed(dir.path).model, pm);
  }
  {
    TempDir dir("packed_bad_config");
    save_model_dir(dir.path, pm, nullptr);
    auto cfg = nlohmann::json::parse(read_file(dir.path + "/config.json"));
    cfg["gptcpp_quant"] = "q4";
    write_file_atomic(dir.path + "/config.json", cfg.dump());
    expect_error(dir.path, "\"gptcpp_quant\" must be \"bf16\" or \"q8\"");
  }
  {
    TempDir dir("packed_meta");
    save_model_dir(dir.path, pm, nullptr);
    const std::string path = dir.path + "/model.safetensors";
    const std::string bytes = read_file(path);
    const SafetensorsFile f = SafetensorsFile::parse(bytes, path);
    std::vector<TensorView> views;
    for (const auto& t : f.tensors()) views.push_back({t.name, t.dtype, t.shape, t.data});
    write_safetensors(path, views, {{"format", "pt"}, {"gptcpp_quant", "bf16"}});
    expect_error(dir.path, "metadata says gptcpp_quant \"bf16\"");
  }
}

}  // namespace
}  // namespace gpt
