#include "io/hf_config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"

namespace gpt {

namespace {

using nlohmann::json;

// Typed access to the keys of one config object; every failure names the file and the key.
// A key set to null counts as absent, as transformers writes null for "use the default".
struct Keys {
  const json& j;
  const std::string& where;

  const json* get(const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void bad(const char* key, std::string_view want, const json& v) const {
    // Containers are not printed: dumping is recursive and a hostile file can nest deeply.
    std::string text = v.is_structured() ? (v.is_array() ? "an array" : "an object")
                                         : v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 40) text = text.substr(0, 37) + "...";
    fail("{}: \"{}\" must be {}, got {}", where, key, want, text);
  }
  std::optional<int> integer(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    int64_t x;
    if (v->is_number_unsigned())
      x = v->get<uint64_t>() > uint64_t{INT_MAX} ? int64_t{INT_MAX} + 1
                                                 : static_cast<int64_t>(v->get<uint64_t>());
    else if (v->is_number_integer())
      x = v->get<int64_t>();
    else
      bad(key, "an integer", *v);
    if (x < INT_MIN || x > INT_MAX) bad(key, "a 32-bit integer", *v);
    return static_cast<int>(x);
  }
  int required_integer(const char* key) const {
    auto v = integer(key);
    if (!v) fail("{}: missing \"{}\"", where, key);
    return *v;
  }
  std::optional<double> number(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number() || !std::isfinite(v->get<double>())) bad(key, "a number", *v);
    return v->get<double>();
  }
  // A double as float32, refusing values float32 cannot hold (rather than making them infinite).
  float to_float(const char* key, double v) const {
    if (std::fabs(v) > std::numeric_limits<float>::max()) bad(key, "a float32 value", json(v));
    return static_cast<float>(v);
  }
  std::optional<bool> boolean(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) bad(key, "true or false", *v);
    return v->get<bool>();
  }
  std::optional<std::string> string(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) bad(key, "a string", *v);
    return v->get<std::string>();
  }
};

// The float as the shortest decimal that reads back as the same float: 1e-5f is written 1e-05,
// not 9.999999747378752e-06.
double json_float(float f) { return std::stod(fmt::format("{}", f)); }

}  // namespace

HfConfig parse_hf_config(std::string_view text, const std::string& where) {
  const json j = parse_json(text, where);
  if (!j.is_object()) fail("{}: not a JSON object", where);
  const Keys k{j, where};

  if (auto type = k.string("model_type"); type && *type != "gpt2")
    fail("{}: model_type \"{}\" is not supported: gpt.cpp reads GPT-2 configs (model_type \"gpt2\")", where,
         *type);
  if (auto act = k.string("activation_function"); act && *act != "gelu_new" && *act != "gelu_pytorch_tanh")
    fail("{}: activation_function \"{}\" is not supported: the network uses GPT-2's tanh GELU (\"gelu_new\")",
         where, *act);
  // GPT2Config options that change the network in ways gpt.cpp does not implement.
  if (k.boolean("scale_attn_weights") == false)
    fail("{}: scale_attn_weights = false is not supported (attention is always scaled by 1/sqrt(head_dim))",
         where);
  if (k.boolean("scale_attn_by_inverse_layer_idx") == true)
    fail("{}: scale_attn_by_inverse_layer_idx = true is not supported", where);

  HfConfig out;
  ModelConfig& c = out.model;
  c.preset = k.string("gptcpp_preset").value_or("custom");
  c.n_layer = k.required_integer("n_layer");
  c.n_head = k.required_integer("n_head");
  c.n_embd = k.required_integer("n_embd");
  auto positions = k.integer("n_positions");
  if (!positions) positions = k.integer("n_ctx");  // older configs name the context n_ctx only
  if (!positions) fail("{}: missing \"n_positions\"", where);
  c.n_ctx = *positions;
  c.vocab_size = k.required_integer("vocab_size");
  if (auto inner = k.integer("n_inner"); inner && *inner != 4 * int64_t{c.n_embd})
    fail("{}: n_inner = {} is not supported: the MLP is 4 * n_embd = {} wide", where, *inner,
         4 * int64_t{c.n_embd});
  if (auto eps = k.number("layer_norm_epsilon")) c.ln_eps = k.to_float("layer_norm_epsilon", *eps);
  c.tied_head = k.boolean("tie_word_embeddings").value_or(true);

  // One dropout rate for embeddings, attention and residuals: the largest given (GPT2Config's
  // default, 0.1, when none is).
  double p = -1;
  for (const char* key : {"resid_pdrop", "embd_pdrop", "attn_pdrop"})
    if (auto v = k.number(key)) p = std::max(p, *v);
  c.dropout = p < 0 ? 0.1f : k.to_float("resid_pdrop", p);

  if (auto ln = k.string("gptcpp_ln")) {
    if (*ln == "pre")
      c.ln = LnPlacement::Pre;
    else if (*ln == "post")
      c.ln = LnPlacement::Post;
    else
      fail("{}: \"gptcpp_ln\" must be \"pre\" or \"post\", got \"{}\"", where, *ln);
  }
  if (auto att = k.string("gptcpp_attention")) {
    if (*att == "dense")
      c.attention = AttentionKind::Dense;
    else if (*att == "alternating_banded")
      c.attention = AttentionKind::AlternatingBanded;
    else
      fail("{}: \"gptcpp_attention\" must be \"dense\" or \"alternating_banded\", got \"{}\"", where, *att);
  }
  if (auto band = k.integer("gptcpp_band")) c.band = *band;
  c.bias = k.boolean("gptcpp_bias").value_or(true);
  if (const json* chars = k.get("gptcpp_chars")) {
    if (!chars->is_array()) k.bad("gptcpp_chars", "an array of strings", *chars);
    std::vector<std::string> list;
    for (const auto& ch : *chars) {
      if (!ch.is_string()) k.bad("gptcpp_chars", "an array of strings", ch);
      list.push_back(ch.get<std::string>());
    }
    out.chars = std::move(list);
  }
  if (auto quant = k.string("gptcpp_quant")) {
    if (*quant != "bf16" && *quant != "q8")
      fail("{}: \"gptcpp_quant\" must be \"bf16\" or \"q8\", got \"{}\"", where, *quant);
    if (auto block = k.integer("gptcpp_quant_block"); block && *block != 32)
      fail("{}: \"gptcpp_quant_block\" {} is not supported (only 32)", where, *block);
    out.quant = std::move(quant);
  }

  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  return out;
}

std::string config_to_hf_json(const ModelConfig& cfg, const Tokenizer* tok) {
  json j = json::object();
  j["model_type"] = "gpt2";
  j["architectures"] = {"GPT2LMHeadModel"};
  j["activation_function"] = "gelu_new";
  j["n_layer"] = cfg.n_layer;
  j["n_head"] = cfg.n_head;
  j["n_embd"] = cfg.n_embd;
  j["n_positions"] = cfg.n_ctx;
  j["n_ctx"] = cfg.n_ctx;
  j["n_inner"] = nullptr;
  j["vocab_size"] = cfg.vocab_size;
  j["layer_norm_epsilon"] = json_float(cfg.ln_eps);
  for (const char* key : {"resid_pdrop", "embd_pdrop", "attn_pdrop"}) j[key] = json_float(cfg.dropout);
  j["initializer_range"] = 0.02;
  j["scale_attn_weights"] = true;
  j["use_cache"] = true;
  j["tie_word_embeddings"] = cfg.tied_head;

  // End-of-text: the tokenizer's, or GPT-2's for a GPT-2-sized vocabulary without one. null
  // (not absent) otherwise, since GPT2Config would default to 50256.
  std::optional<TokenId> eot;
  if (tok)
    eot = tok->eot_token();
  else if (cfg.vocab_size == 50257)
    eot = 50256;
  j["bos_token_id"] = eot ? json(*eot) : json(nullptr);
  j["eos_token_id"] = eot ? json(*eot) : json(nullptr);

  j["gptcpp_preset"] = cfg.preset;
  if (cfg.ln != LnPlacement::Pre) j["gptcpp_ln"] = to_string(cfg.ln);
  if (cfg.attention != AttentionKind::Dense) {
    j["gptcpp_attention"] = to_string(cfg.attention);
    j["gptcpp_band"] = cfg.band;
  }
  if (!cfg.bias) j["gptcpp_bias"] = false;
  if (tok && tok->kind() == "char") {
    json chars = json::array();
    for (size_t id = 0; id < tok->vocab_size(); ++id)
      chars.push_back(std::string(tok->token_bytes(static_cast<TokenId>(id))));
    j["gptcpp_chars"] = std::move(chars);
  }
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace gpt
