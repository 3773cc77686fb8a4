// Checkpoints: config.json <-> ModelConfig, Hugging Face model directories and llm.c files round
// trip bit-exactly for every architecture variant, the layouts are the published ones (checked
// element by element, not only by round trip), and every mismatch or damage is one clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "io/hf_config.h"
#include "io/llmc.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt {
namespace {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) : path(test::temp_dir(name)) {}
  ~TempDir() { std::filesystem::remove_all(path); }
};

ModelConfig small_config() {
  ModelConfig c;
  c.preset = "tiny";
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.n_ctx = 16;
  c.vocab_size = 11;
  c.dropout = 0.1f;
  return c;
}

// Every parameter a different value (exact in float32), so any layout mistake shows.
GPT filled_model(const ModelConfig& cfg) {
  GPT m(cfg);
  for (size_t i = 0; i < m.num_parameters(); ++i) m.params()[i] = static_cast<float>(i) * 0.25f - 100.0f;
  return m;
}

bool same_params(const GPT& a, const GPT& b) {
  return a.num_parameters() == b.num_parameters() &&
         std::memcmp(a.params(), b.params(), a.num_parameters() * sizeof(float)) == 0;
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.preset, b.preset);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.n_head, b.n_head);
  EXPECT_EQ(a.n_embd, b.n_embd);
  EXPECT_EQ(a.n_ctx, b.n_ctx);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.ln, b.ln);
  EXPECT_EQ(a.attention, b.attention);
  if (a.attention == AttentionKind::AlternatingBanded) {
    EXPECT_EQ(a.band, b.band);
  }
  EXPECT_EQ(a.dropout, b.dropout);
  EXPECT_EQ(a.bias, b.bias);
  EXPECT_EQ(a.tied_head, b.tied_head);
  EXPECT_EQ(a.ln_eps, b.ln_eps);
}

template <typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error, expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

// ---- config.json -------------------------------------------------------------------------------

// The published openai-community/gpt2 config.json (the keys that matter, as published).
const char* kPublishedGpt2Config = R"({
  "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
  "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
  "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
  "summary_first_dropout": 0.1, "summary_proj_to_labels": true, "summary_type": "cls_index",
  "summary_use_proj": true, "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257})";

TEST(HfConfig, ReadsThePublishedGpt2Config) {
  ModelConfig c = config_from_hf_json(kPublishedGpt2Config, "config.json");
  ModelConfig want = preset_config("gpt2");
  want.preset = "custom";
  expect_same_config(c, want);
  EXPECT_EQ(c.num_parameters(), 124'439'808u);
}

TEST(HfConfig, WritesGpt2ConfigKeys) {
  auto j = nlohmann::json::parse(config_to_hf_json(preset_config("gpt2"), gpt2_tokenizer().get()));
  EXPECT_EQ(j["model_type"], "gpt2");
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"GPT2LMHeadModel"}));
  EXPECT_EQ(j["activation_function"], "gelu_new");
  EXPECT_EQ(j["n_positions"], 1024);
  EXPECT_EQ(j["n_ctx"], 1024);
  EXPECT_EQ(j["n_embd"], 768);
  EXPECT_EQ(j["vocab_size"], 50257);
  EXPECT_EQ(j["layer_norm_epsilon"].get<double>(), 1e-5);  // the double 1e-5, not float 1e-5 widened
  EXPECT_EQ(j["resid_pdrop"].get<double>(), 0.1);
  EXPECT_EQ(j["attn_pdrop"].get<double>(), 0.1);
  EXPECT_EQ(j["embd_pdrop"].get<double>(), 0.1);
  EXPECT_EQ(j["bos_token_id"], 50256);
  EXPECT_EQ(j["eos_token_id"], 50256);
  EXPECT_EQ(j["tie_word_embeddings"], true);
  EXPECT_EQ(j["gptcpp_preset"], "gpt2");
  // Plain GPT-2 carries no extension keys.
  for (const char* k : {"gptcpp_ln", "gptcpp_attention", "gptcpp_band", "gptcpp_bias", "gptcpp_chars"})
    EXPECT_FALSE(j.contains(k)) << k;

  ModelConfig g1 = preset_config("gpt1");
  g1.bias = false;
  auto k = nlohmann::json::parse(config_to_hf_json(g1, nullptr));
  EXPECT_EQ(k["gptcpp_ln"], "post");
  EXPECT_EQ(k["gptcpp_bias"], false);
  EXPECT_TRUE(k["bos_token_id"].is_null());  // not GPT-2's vocabulary: no end-of-text id
  auto g3 = nlohmann::json::parse(config_to_hf_json(preset_config("gpt3-small"), nullptr));
  EXPECT_EQ(g3["gptcpp_attention"], "alternating_banded");
  EXPECT_EQ(g3["gptcpp_band"], preset_config("gpt3-small").band);
}

TEST(HfConfig, RoundTripsEveryPreset) {
  for (const auto& name : preset_names()) {
    ModelConfig c = preset_config(name);
    try {
      c.validate();
    } catch (const Error& e) {
      ADD_FAILURE() << "preset " << name << " is not a valid config: " << e.what();
      continue;
    }
    expect_same_config(config_from_hf_json(config_to_hf_json(c, nullptr), "c"), c);
  }
  ModelConfig odd = small_config();
  odd.ln_eps = 3.3e-7f;
  odd.dropout = 0.123456f;
  odd.tied_head = false;
  expect_same_config(config_from_hf_json(config_to_hf_json(odd, nullptr), "c"), odd);
}

TEST(HfConfig, Defaults) {
  // Only the shape given: GPT-2's defaults for the rest.
  ModelConfig c =
      config_from_hf_json(R"({"n_layer": 2, "n_head": 2, "n_embd": 8, "n_ctx": 16, "vocab_size": 11})", "c");
  EXPECT_EQ(c.n_ctx, 16);  // n_ctx when n_positions is absent
  EXPECT_EQ(c.ln, LnPlacement::Pre);
  EXPECT_EQ(c.attention, AttentionKind::Dense);
  EXPECT_TRUE(c.bias);
  EXPECT_TRUE(c.tied_head);
  EXPECT_EQ(c.ln_eps, 1e-5f);
  EXPECT_EQ(c.dropout, 0.1f);
  // The largest dropout wins; null means "default".
  c = config_from_hf_json(R"({"n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 16, "vocab_size": 11,
      "resid_pdrop": 0.0, "attn_pdrop": 0.2, "embd_pdrop": null, "n_inner": null, "activation_function": "gelu_pytorch_tanh"})",
                          "c");
  EXPECT_EQ(c.dropout, 0.2f);
}

TEST(HfConfig, BadValues) {
  const std::string base = R"("n_layer": 2, "n_positions": 16, "vocab_size": 11)";
  auto parse = [](const std::string& text) { return [text] { parse_hf_config(text, "d/config.json"); }; };
  expect_error(parse("{" + base + R"(, "n_head": 3, "n_embd": 8})"),
               "d/config.json: model config: n_embd (8) must be a multiple of n_head (3)");
  expect_error(parse(R"({"n_layer": -2, "n_head": 2, "n_embd": 8, "n_positions": 16, "vocab_size": 11})"),
               "n_layer must be in");
  expect_error(parse(R"({"n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 16, "vocab_size": 0})"),
               "vocab_size must be in");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": "8"})"),
               "\"n_embd\" must be an integer, got \"8\"");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8.5})"), "\"n_embd\" must be an integer");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 99999999999})"),
               "\"n_embd\" must be a 32-bit integer");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 18446744073709551615})"), "32-bit integer");
  expect_error(parse("{" + base + R"(, "n_head": 2})"), "missing \"n_embd\"");
  expect_error(parse(R"({"n_layer": 2, "n_head": 2, "n_embd": 8, "vocab_size": 11})"),
               "missing \"n_positions\"");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "tie_word_embeddings": "yes"})"),
               "must be true or false");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "activation_function": "relu"})"),
               "activation_function \"relu\" is not supported");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "model_type": "llama"})"),
               "model_type \"llama\" is not supported");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "n_inner": 64})"),
               "n_inner = 64 is not supported");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "scale_attn_weights": false})"),
               "scale_attn_weights");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "gptcpp_ln": "middle"})"),
               "\"gptcpp_ln\" must be \"pre\" or \"post\"");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "gptcpp_attention": "sparse"})"),
               "gptcpp_attention");
  expect_error(
      parse("{" + base +
            R"(, "n_head": 2, "n_embd": 8, "gptcpp_attention": "alternating_banded", "gptcpp_band": 0})"),
      "band width");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "gptcpp_chars": ["a", 1]})"),
               "gptcpp_chars");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "layer_norm_epsilon": -1})"),
               "layer_norm_epsilon");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "resid_pdrop": 1.5})"), "dropout");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "resid_pdrop": "0.1"})"),
               "\"resid_pdrop\" must be a number");
  // Deep nesting is refused before anything walks it (core/json.h); shallow nesting is a type error.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": )" + deep + "}"),
               "d/config.json: not valid JSON (nested deeper than 256 levels, at line 1, column ");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": [[[1]]]})"),
               "\"n_embd\" must be an integer, got an array");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "gptcpp_chars": [)" + deep + "]}"),
               "nested deeper than 256 levels");
  expect_error(parse("{" + base + R"(, "n_head": 2, "n_embd": 8, "gptcpp_chars": [[["a"]]]})"),
               "gptcpp_chars");
  expect_error(parse("{\"n_layer\": "), "d/config.json: not valid JSON");
  expect_error(parse("[]"), "not a JSON object");
  expect_error(parse("\xFF"), "not valid JSON");
}

// ---- model directories ---------------------------------------------------------------------------

struct Variant {
  const char* name;
  void (*tweak)(ModelConfig&);
};
const Variant kVariants[] = {
    {"pre_ln", [](ModelConfig&) {}},
    {"post_ln", [](ModelConfig& c) { c.ln = LnPlacement::Post; }},
    {"banded",
     [](ModelConfig& c) {
       c.attention = AttentionKind::AlternatingBanded;
       c.band = 3;
     }},
    {"no_bias", [](ModelConfig& c) { c.bias = false; }},
    {"untied", [](ModelConfig& c) { c.tied_head = false; }},
    {"all_at_once",
     [](ModelConfig& c) {
       c.ln = LnPlacement::Post;
       c.bias = false;
       c.tied_head = false;
       c.ln_eps = 1e-6f;
       c.n_layer = 3;
     }},
};

TEST(ModelDir, RoundTripEveryVariant) {
  for (const auto& v : kVariants) {
    SCOPED_TRACE(v.name);
    TempDir dir(std::string("md_") + v.name);
    ModelConfig cfg = small_config();
    v.tweak(cfg);
    GPT m = filled_model(cfg);
    save_model_dir(dir.path, m, nullptr);
    LoadedModel back = load_model_dir(dir.path);
    expect_same_config(back.model.config(), cfg);
    EXPECT_TRUE(same_params(back.model, m));
    EXPECT_EQ(back.tokenizer, nullptr);
    // The files: only the tensors of the config, with save_pretrained's names.
    SafetensorsFile f = SafetensorsFile::open(dir.path + "/model.safetensors");
    EXPECT_EQ(f.tensors().size(), m.layout().size());
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_NE(f.find("transformer.wte.weight"), nullptr);
    EXPECT_EQ(f.find("lm_head.weight") != nullptr, !cfg.tied_head);
    EXPECT_EQ(f.find("transformer.h.0.ln_1.bias") != nullptr, cfg.bias);
    EXPECT_EQ(f.find("transformer.ln_f.weight") != nullptr, cfg.ln == LnPlacement::Pre);
    // Saving what was loaded gives the same bytes.
    TempDir again(std::string("md2_") + v.name);
    save_model_dir(again.path, back.model, nullptr);
    EXPECT_EQ(read_file(again.path + "/model.safetensors"), read_file(dir.path + "/model.safetensors"));
    EXPECT_EQ(read_file(again.path + "/config.json"), read_file(dir.path + "/config.json"));
  }
}

TEST(ModelDir, ConvOneDLayoutOnDisk) {
  // c_attn.weight is stored [in, out] = [C, 3C], row-major, exactly as the arena holds it.
  TempDir dir("md_layout");
  GPT m = filled_model(small_config());
  save_model_dir(dir.path, m, nullptr);
  SafetensorsFile f = SafetensorsFile::open(dir.path + "/model.safetensors");
  const TensorEntry* t = f.find("transformer.h.1.attn.c_attn.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{8, 24}));
  std::vector<float> w(t->numel);
  f.read_f32(*t, w);
  const float* p = m.param("h.1.attn.c_attn.weight");
  EXPECT_EQ(w[0 * 24 + 5], p[5]);  // row 0 (input 0), column 5 (output 5)
  EXPECT_EQ(w[3 * 24 + 17], p[3 * 24 + 17]);
  EXPECT_EQ(std::memcmp(w.data(), p, w.size() * 4), 0);
}

TEST(ModelDir, CharTokenizerLivesInConfig) {
  TempDir dir("md_char");
  CharTokenizer tok({"\n", " ", "a", "b", "\xC3\xA9", "\xE2\x82\xAC"});
  ModelConfig cfg = small_config();
  GPT m = filled_model(cfg);
  save_model_dir(dir.path, m, &tok);
  EXPECT_FALSE(file_exists(dir.path + "/vocab.json"));
  auto j = nlohmann::json::parse(read_file(dir.path + "/config.json"));
  EXPECT_EQ(j["gptcpp_chars"].size(), 6u);
  LoadedModel back = load_model_dir(dir.path);
  ASSERT_NE(back.tokenizer, nullptr);
  EXPECT_EQ(back.tokenizer->kind(), "char");
  EXPECT_EQ(back.tokenizer->vocab_size(), 6u);
  EXPECT_EQ(back.tokenizer->encode("ab \xE2\x82\xAC\xC3\xA9\n"), (std::vector<TokenId>{2, 3, 1, 5, 4, 0}));
  EXPECT_TRUE(same_params(back.model, m));
  // A tokenizer larger than the model's vocabulary is refused.
  CharTokenizer big({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B"});
  expect_error([&] { save_model_dir(dir.path + "/big", m, &big); }, "more than the model's vocab_size 11");
}

TEST(ModelDir, Gpt2TokenizerFiles) {
  TempDir dir("md_bpe");
  ModelConfig cfg = small_config();
  cfg.vocab_size = 50257;
  GPT m = filled_model(cfg);
  save_model_dir(dir.path, m, gpt2_tokenizer().get());
  EXPECT_TRUE(file_exists(dir.path + "/vocab.json"));
  EXPECT_TRUE(file_exists(dir.path + "/merges.txt"));
  LoadedModel back = load_model_dir(dir.path);
  ASSERT_NE(back.tokenizer, nullptr);
  EXPECT_EQ(back.tokenizer->kind(), "bpe");
  EXPECT_EQ(back.tokenizer->encode("Hello world"), (std::vector<TokenId>{15496, 995}));
  EXPECT_TRUE(same_params(back.model, m));
  auto j = nlohmann::json::parse(read_file(dir.path + "/config.json"));
  EXPECT_EQ(j["eos_token_id"], 50256);
}

// A directory laid out like the published openai-community/gpt2 one: GPT2Model names (no
// "transformer."), causal-mask buffers, a redundant lm_head.weight, and half-precision weights.
TEST(ModelDir, PublishedLayoutAndHalfPrecision) {
  for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
    SCOPED_TRACE(to_string(dt));
    TempDir dir("md_published");
    ModelConfig cfg = small_config();
    GPT want(cfg);
    std::vector<std::vector<uint16_t>> halves;
    std::vector<std::vector<float>> fulls;
    std::vector<TensorView> views;
    for (const auto& p : want.layout()) {
      float* dst = want.params() + p.offset;
      for (size_t i = 0; i < p.numel; ++i)
        dst[i] = static_cast<float>(p.offset + i) * 0.125f - 64.0f;  // exact in F16/BF16
      if (dt == DType::F32) {
        views.push_back({p.name, dt, p.shape, dst});
        continue;
      }
      halves.emplace_back(p.numel);
      for (size_t i = 0; i < p.numel; ++i)
        halves.back()[i] = dt == DType::F16 ? f32_to_f16(dst[i]) : f32_to_bf16(dst[i]);
      views.push_back({p.name, dt, p.shape, halves.back().data()});
    }
    for (size_t i = 0; i < want.num_parameters(); ++i)  // what the file's precision keeps
      want.params()[i] = dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(want.params()[i])) : want.params()[i];
    const std::vector<float> mask(16 * 16, 1.0f), junk(11 * 8, 9.0f);
    const float masked = -1e4f;
    for (int l = 0; l < 2; ++l) {
      views.push_back({"h." + std::to_string(l) + ".attn.bias", DType::F32, {1, 1, 16, 16}, mask.data()});
      views.push_back({"h." + std::to_string(l) + ".attn.masked_bias", DType::F32, {}, &masked});
    }
    views.push_back({"lm_head.weight", DType::F32, {11, 8}, junk.data()});  // tied: ignored
    write_safetensors(dir.path + "/model.safetensors", views, {{"format", "pt"}});
    write_file_atomic(
        dir.path + "/config.json",
        R"({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 16, "n_ctx": 16,
                          "vocab_size": 11, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1})");
    LoadedModel back = load_model_dir(dir.path);
    EXPECT_TRUE(same_params(back.model, want));
    // A float32 re-save gives the same numbers.
    TempDir out("md_published_out");
    save_model_dir(out.path, back.model, nullptr);
    EXPECT_TRUE(same_params(load_model_dir(out.path).model, want));
  }
}

TEST(ModelDir, ShardedWeights) {
  TempDir dir("md_sharded");
  GPT m = filled_model(small_config());
  std::vector<TensorView> a, b;
  nlohmann::json map;
  for (const auto& p : m.layout()) {
    bool first = p.name.starts_with("w") || p.name.starts_with("h.0.");
    (first ? a : b).push_back({"transformer." + p.name, DType::F32, p.shape, m.params() + p.offset});
    map["transformer." + p.name] =
        first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(dir.path + "/model-00001-of-00002.safetensors", a);
  write_safetensors(dir.path + "/model-00002-of-00002.safetensors", b);
  write_file_atomic(dir.path + "/model.safetensors.index.json", nlohmann::json{{"weight_map", map}}.dump());
  write_file_atomic(dir.path + "/config.json", config_to_hf_json(m.config(), nullptr));
  EXPECT_TRUE(same_params(load_model_dir(dir.path).model, m));
  write_file_atomic(dir.path + "/model.safetensors.index.json", R"({"weight_map": {"x": "../evil"}})");
  expect_error([&] { load_model_dir(dir.path); }, "is not a file in the directory");
}

// Saves a small model, then lets `edit` change the directory before loading it.
template <typename Edit>
void expect_load_error(const char* name, Edit&& edit, const std::string& part,
                       ModelConfig cfg = small_config()) {
  SCOPED_TRACE(name);
  TempDir dir(name);
  GPT m = filled_model(cfg);
  save_model_dir(dir.path, m, nullptr);
  edit(dir.path, m);
  expect_error([&] { load_model_dir(dir.path); }, part);
}

void set_config(const std::string& dir, const std::string& key, const nlohmann::json& value) {
  auto j = nlohmann::json::parse(read_file(dir + "/config.json"));
  j[key] = value;
  write_file_atomic(dir + "/config.json", j.dump());
}

// Rewrites model.safetensors from the model, dropping `drop` and renaming/reshaping as asked.
void rewrite_weights(const std::string& dir, const GPT& m, const std::string& drop,
                     const std::vector<TensorView>& extra = {}) {
  std::vector<TensorView> views;
  for (const auto& p : m.layout())
    if (p.name != drop) views.push_back({p.name, DType::F32, p.shape, m.params() + p.offset});
  for (const auto& e : extra) views.push_back(e);
  write_safetensors(dir + "/model.safetensors", views);
}

TEST(ModelDir, ConfigDoesNotMatchWeights) {
  expect_load_error(
      "md_vocab", [](const std::string& d, const GPT&) { set_config(d, "vocab_size", 12); },
      "config.json does not match the weights: tensor \"transformer.wte.weight\" is [11, 8] in "
      "model.safetensors, the config needs [12, 8]");
  expect_load_error(
      "md_embd", [](const std::string& d, const GPT&) { set_config(d, "n_embd", 16); },
      "config needs [11, 16]");
  // A config far larger than the weights (39 GB of parameters) fails before allocating anything.
  expect_load_error(
      "md_huge",
      [](const std::string& d, const GPT&) {
        set_config(d, "n_embd", 4096);
        set_config(d, "n_layer", 48);
      },
      "config needs [11, 4096]");
  expect_load_error(
      "md_ctx", [](const std::string& d, const GPT&) { set_config(d, "n_positions", 32); },
      "tensor \"transformer.wpe.weight\" is [16, 8] in model.safetensors, the config needs [32, 8]");
  expect_load_error(
      "md_more_layers", [](const std::string& d, const GPT&) { set_config(d, "n_layer", 3); },
      "config.json does not match the weights: tensor \"h.2.ln_1.weight\" is missing from model.safetensors");
  expect_load_error(
      "md_fewer_layers", [](const std::string& d, const GPT&) { set_config(d, "n_layer", 1); },
      "unexpected tensor \"transformer.h.1.");
  expect_load_error(
      "md_nobias", [](const std::string& d, const GPT&) { set_config(d, "gptcpp_bias", false); },
      "unexpected tensor \"transformer.h.0.attn.c_attn.bias\"");
  expect_load_error(
      "md_postln", [](const std::string& d, const GPT&) { set_config(d, "gptcpp_ln", "post"); },
      "unexpected tensor \"transformer.ln_f.");
  expect_load_error(
      "md_untie", [](const std::string& d, const GPT&) { set_config(d, "tie_word_embeddings", false); },
      "tensor \"lm_head.weight\" is missing");
}

TEST(ModelDir, TiedConfigIgnoresLmHead) {
  TempDir dir("md_tied_ignores");
  ModelConfig untied = small_config();
  untied.tied_head = false;
  GPT m = filled_model(untied);
  save_model_dir(dir.path, m, nullptr);
  set_config(dir.path, "tie_word_embeddings", true);
  LoadedModel back = load_model_dir(dir.path);
  EXPECT_TRUE(back.model.config().tied_head);
  EXPECT_EQ(std::memcmp(back.model.param("wte.weight"), m.param("wte.weight"), 88 * 4), 0);
}

TEST(ModelDir, BadWeights) {
  expect_load_error(
      "md_missing", [](const std::string& d, const GPT& m) { rewrite_weights(d, m, "h.1.mlp.c_fc.bias"); },
      "tensor \"h.1.mlp.c_fc.bias\" is missing from model.safetensors");
  const float x[3] = {1, 2, 3};
  expect_load_error(
      "md_extra",
      [&](const std::string& d, const GPT& m) {
        rewrite_weights(d, m, "", {{"h.0.attn.c_attn.scale", DType::F32, {3}, x}});
      },
      "unexpected tensor \"h.0.attn.c_attn.scale\"");
  expect_load_error(
      "md_shape",
      [&](const std::string& d, const GPT& m) {
        rewrite_weights(d, m, "h.0.ln_2.bias", {{"h.0.ln_2.bias", DType::F32, {3}, x}});
      },
      "tensor \"h.0.ln_2.bias\" is [3] in model.safetensors, the config needs [8]");
  expect_load_error(
      "md_twice",
      [&](const std::string& d, const GPT& m) {
        rewrite_weights(d, m, "", {{"transformer.ln_f.bias", DType::F32, {8}, m.param("ln_f.bias")}});
      },
      "tensor \"ln_f.bias\" is stored twice");
  expect_load_error(
      "md_int",
      [&](const std::string& d, const GPT& m) {
        const int32_t ints[8] = {};
        rewrite_weights(d, m, "ln_f.bias", {{"ln_f.bias", DType::I32, {8}, ints}});
      },
      "is I32");
  expect_load_error(
      "md_damaged",
      [](const std::string& d, const GPT&) {
        std::string s = read_file(d + "/model.safetensors");
        write_file_atomic(d + "/model.safetensors", s.substr(0, s.size() - 4));
      },
      "model.safetensors: tensor");
}

TEST(ModelDir, MissingFiles) {
  TempDir dir("md_files");
  expect_error([&] { load_model_dir(dir.path + "/nope"); }, "no such model directory");
  expect_error([&] { load_model_dir(dir.path); }, "no config.json");
  save_model_dir(dir.path, filled_model(small_config()), nullptr);
  std::filesystem::remove(dir.path + "/model.safetensors");
  expect_error([&] { load_model_dir(dir.path); }, "no model.safetensors");
  write_file_atomic(dir.path + "/pytorch_model.bin", "x");
  expect_error([&] { load_model_dir(dir.path); }, "gpt.cpp reads safetensors only");
  write_file_atomic(dir.path + "/config.json", "{\"n_layer\": 2");
  expect_error([&] { load_model_dir(dir.path); }, "config.json: not valid JSON");
}

// ---- llm.c ---------------------------------------------------------------------------------------

TEST(Llmc, RoundTripIsBitExact) {
  TempDir dir("llmc_rt");
  ModelConfig cfg = small_config();
  cfg.dropout = 0.0f;
  GPT m = filled_model(cfg);
  const std::string path = dir.path + "/model.bin";
  save_llmc(path, m);
  GPT back = load_llmc(path);
  EXPECT_TRUE(same_params(back, m));
  EXPECT_EQ(back.config().n_layer, 2);
  EXPECT_EQ(back.config().vocab_size, 11);
  EXPECT_EQ(back.config().n_ctx, 16);
  EXPECT_TRUE(back.config().tied_head);
}

TEST(Llmc, FileLayoutIsLlmcs) {
  // Checked against the format itself, not only by round trip: header, wte padded to 128 rows,
  // then each tensor stacked over layers, Linear weights as [out, in].
  TempDir dir("llmc_layout");
  GPT m = filled_model(small_config());
  const std::string path = dir.path + "/model.bin";
  save_llmc(path, m);
  const std::string s = read_file(path);
  const size_t C = 8, L = 2, V = 11, Vp = 128, T = 16;
  ASSERT_EQ(s.size(), 1024 + 4 * (Vp * C + T * C + L * (12 * C * C + 13 * C) + 2 * C));
  std::vector<int32_t> h(256);
  std::memcpy(h.data(), s.data(), 1024);
  EXPECT_EQ(h[0], 20240326);
  EXPECT_EQ(h[1], 3);
  EXPECT_EQ((std::vector<int32_t>(h.begin() + 2, h.begin() + 8)),
            (std::vector<int32_t>{16, 11, 2, 2, 8, 128}));
  std::vector<float> f((s.size() - 1024) / 4);
  std::memcpy(f.data(), s.data() + 1024, f.size() * 4);
  size_t at = 0;
  EXPECT_EQ(std::memcmp(&f[at], m.param("wte.weight"), V * C * 4), 0);
  for (size_t i = V * C; i < Vp * C; ++i) EXPECT_EQ(f[at + i], 0.0f);  // padding rows
  at += Vp * C;
  EXPECT_EQ(std::memcmp(&f[at], m.param("wpe.weight"), T * C * 4), 0);
  at += T * C;
  EXPECT_EQ(f[at + 1 * C + 3], m.param("h.1.ln_1.weight")[3]);  // ln1w [L, C]
  at += 2 * L * C;                                              // ln1w, ln1b
  // qkvw [L, 3C, C]: element (l, out o, in i) is Conv1D [in i, out o] = p[i * 3C + o].
  for (size_t l = 0; l < L; ++l)
    for (size_t o = 0; o < 3 * C; ++o)
      for (size_t i = 0; i < C; ++i)
        ASSERT_EQ(f[at + l * 3 * C * C + o * C + i],
                  m.param(fmt::format("h.{}.attn.c_attn.weight", l))[i * 3 * C + o]);
  at += L * 3 * C * C + L * 3 * C;      // qkvw, qkvb
  at += L * C * C + L * C + 2 * L * C;  // attprojw, attprojb, ln2w, ln2b
  at += L * 4 * C * C + L * 4 * C;      // fcw, fcb
  // fcprojw [L, C, 4C]: (l, out o < C, in i < 4C) = Conv1D [4C, C] p[i * C + o].
  EXPECT_EQ(f[at + 1 * 4 * C * C + 2 * 4 * C + 7], m.param("h.1.mlp.c_proj.weight")[7 * C + 2]);
  at += L * 4 * C * C + L * C;
  EXPECT_EQ(std::memcmp(&f[at], m.param("ln_f.weight"), C * 4), 0);
  EXPECT_EQ(std::memcmp(&f[at + C], m.param("ln_f.bias"), C * 4), 0);
  EXPECT_EQ(at + 2 * C, f.size());
}

TEST(Llmc, ReadsBfloat16Version5) {
  TempDir dir("llmc_bf16");
  ModelConfig cfg = small_config();
  GPT m(cfg);
  for (size_t i = 0; i < m.num_parameters(); ++i) m.params()[i] = static_cast<float>(i % 200) - 100.0f;
  const std::string path = dir.path + "/model.bin";
  save_llmc(path, m);
  // Same file in bfloat16: version 5, every float narrowed (exactly, for these values).
  std::string s = read_file(path);
  int32_t version = 5;
  std::memcpy(s.data() + 4, &version, 4);
  std::string bf = s.substr(0, 1024);
  for (size_t i = 1024; i < s.size(); i += 4) {
    float v;
    std::memcpy(&v, s.data() + i, 4);
    uint16_t b = f32_to_bf16(v);
    bf.append(reinterpret_cast<const char*>(&b), 2);
  }
  write_file_atomic(path, bf);
  EXPECT_TRUE(same_params(load_llmc(path), m));
}

TEST(Llmc, HeaderValidation) {
  TempDir dir("llmc_bad");
  const std::string good = dir.path + "/good.bin", bad = dir.path + "/bad.bin";
  save_llmc(good, filled_model(small_config()));
  const std::string s = read_file(good);
  auto with_int = [&](int index, int32_t v) {
    std::string t = s;
    std::memcpy(t.data() + 4 * index, &v, 4);
    write_file_atomic(bad, t);
    return [&] { load_llmc(bad); };
  };
  expect_error(with_int(0, 20240520), "not an llm.c model checkpoint (magic 20240520, expected 20240326)");
  expect_error(with_int(1, 4), "llm.c checkpoint version 4 is not supported");
  expect_error(with_int(4, 0), "n_layer must be in");
  expect_error(with_int(4, 3), "but its header describes");
  expect_error(with_int(5, 3), "must be a multiple of n_head");
  expect_error(with_int(7, 10), "padded_vocab_size 10 does not fit vocab_size 11");
  expect_error(with_int(3, 2000000000), "vocab_size must be in");
  expect_error(with_int(6, 65536), "but its header describes");  // no giant allocation first
  for (size_t cut : {size_t{0}, size_t{100}, size_t{1023}}) {
    write_file_atomic(bad, s.substr(0, cut));
    expect_error([&] { load_llmc(bad); }, "shorter than its 1024-byte header");
  }
  for (size_t cut : {size_t{1024}, s.size() / 2, s.size() - 4}) {
    write_file_atomic(bad, s.substr(0, cut));
    expect_error([&] { load_llmc(bad); }, "truncated?");
  }
  write_file_atomic(bad, s + "xxxx");
  expect_error([&] { load_llmc(bad); }, "but its header describes");
  expect_error([&] { load_llmc(dir.path + "/none.bin"); }, "none.bin");
}

TEST(Llmc, ExportNeedsGpt2Shape) {
  TempDir dir("llmc_export");
  for (const auto& v : kVariants) {
    if (std::string(v.name) == "pre_ln") continue;
    ModelConfig cfg = small_config();
    v.tweak(cfg);
    expect_error([&] { save_llmc(dir.path + "/x.bin", GPT(cfg)); },
                 "llm.c checkpoints hold only GPT-2's shape");
  }
  ModelConfig eps = small_config();
  eps.ln_eps = 1e-6f;
  expect_error([&] { save_llmc(dir.path + "/x.bin", GPT(eps)); }, "layer_norm_epsilon 1e-06");
  EXPECT_FALSE(file_exists(dir.path + "/x.bin"));
}

TEST(Llmc, ThroughAModelDirectory) {
  // llm.c -> HF directory -> llm.c is byte-identical.
  TempDir dir("llmc_hf");
  ModelConfig cfg = small_config();
  cfg.dropout = 0.0f;
  save_llmc(dir.path + "/a.bin", filled_model(cfg));
  save_model_dir(dir.path + "/hf", load_llmc(dir.path + "/a.bin"), nullptr);
  save_llmc(dir.path + "/b.bin", load_model_dir(dir.path + "/hf").model);
  EXPECT_EQ(read_file(dir.path + "/a.bin"), read_file(dir.path + "/b.bin"));
}

}  // namespace
}  // namespace gpt
