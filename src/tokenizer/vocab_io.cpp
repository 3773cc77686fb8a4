#include "tokenizer/vocab_io.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "tokenizer/byte_level.h"

namespace gpt {

namespace {
// Ids beyond this are surely a corrupt file, not a vocabulary (GPT-2 has 50,257).
constexpr int64_t kMaxVocab = 1 << 24;
}  // namespace

namespace {
// Streams {"token": id, ...} straight into tokens[id] (no DOM: loading is ~3x faster).
class VocabSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::vector<std::string> tokens;

  bool start_object(std::size_t) override {
    if (depth_++ != 0) return bad("expected a JSON object mapping tokens to ids");
    return true;
  }
  bool end_object() override { return --depth_ >= 0; }
  bool key(string_t& k) override {
    key_ = k;
    return true;
  }
  bool number_integer(number_integer_t v) override { return id(v); }
  bool number_unsigned(number_unsigned_t v) override {
    return id(v > static_cast<number_unsigned_t>(kMaxVocab) ? kMaxVocab : static_cast<int64_t>(v));
  }
  bool number_float(number_float_t, const string_t&) override { return not_int(); }
  bool null() override { return not_int(); }
  bool boolean(bool) override { return not_int(); }
  bool string(string_t&) override { return not_int(); }
  bool binary(binary_t&) override { return not_int(); }
  bool start_array(std::size_t) override {
    return depth_ == 0 ? bad("expected a JSON object mapping tokens to ids") : not_int();
  }
  bool end_array() override { return false; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) override {
    return bad(fmt::format("not valid JSON (byte {})", position));
  }
  std::string error;

 private:
  bool id(int64_t id) {
    if (depth_ != 1) return bad("expected a JSON object mapping tokens to ids");
    if (id < 0 || id >= kMaxVocab)
      return bad(fmt::format("token '{}' has an id out of range ({})", key_, id));
    if (!vocab_text_to_bytes(key_, &bytes_) || bytes_.empty())
      return bad(fmt::format("token '{}' is not written in GPT-2's byte-level alphabet", key_));
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
    if (!tokens[id].empty()) return bad(fmt::format("id {} is given to two tokens", id));
    tokens[id] = bytes_;
    return true;
  }
  bool not_int() {
    if (depth_ == 0) return bad("expected a JSON object mapping tokens to ids");
    return bad(fmt::format("the id of token '{}' is not an integer", key_));
  }
  bool bad(std::string why) {
    if (error.empty()) error = std::move(why);
    return false;
  }
  int depth_ = 0;
  std::string key_, bytes_;
};
}  // namespace

std::vector<std::string> parse_vocab_json(std::string_view json, const std::string& source) {
  // The SAX reader builds no tree, but keeps the same depth limit as every other reader (core/json.h).
  if (json_depth_exceeded(json) != std::string_view::npos)
    fail("{}: not valid JSON (nested deeper than {} levels)", source, kMaxJsonDepth);
  VocabSax sax;
  bool ok = nlohmann::json::sax_parse(json.begin(), json.end(), &sax);
  if (!ok || !sax.error.empty()) fail("{}: {}", source, sax.error.empty() ? "not valid JSON" : sax.error);
  if (sax.tokens.empty()) fail("{}: the vocabulary is empty", source);
  return std::move(sax.tokens);
}

std::vector<std::pair<std::string, std::string>> parse_merges(std::string_view text,
                                                              const std::string& source) {
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0, pos = 0;
  std::string a, b;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line_no == 1 && line.starts_with("#version")) continue;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos)
      fail("{} line {}: expected two tokens separated by one space", source, line_no);
    if (!vocab_text_to_bytes(line.substr(0, sp), &a) || !vocab_text_to_bytes(line.substr(sp + 1), &b))
      fail("{} line {}: a token is not written in GPT-2's byte-level alphabet", source, line_no);
    merges.emplace_back(a, b);
  }
  return merges;
}

std::pair<std::vector<std::string>, std::vector<std::pair<std::string, std::string>>> parse_tokenizer_json(
    std::string_view json, const std::string& source) {
  nlohmann::json j = parse_json(json, source);
  const auto* model = j.is_object() && j.contains("model") ? &j["model"] : nullptr;
  if (!model || !model->is_object() || model->value("type", std::string("BPE")) != "BPE" ||
      !model->contains("vocab") || !(*model)["vocab"].is_object() || !model->contains("merges") ||
      !(*model)["merges"].is_array())
    fail("{}: expected a BPE model with \"vocab\" and \"merges\"", source);
  if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object() &&
      j["pre_tokenizer"].value("type", std::string()) != "ByteLevel")
    fail("{}: only byte-level BPE (GPT-2 style) is supported", source);

  auto tokens = parse_vocab_json((*model)["vocab"].dump(), source + " (model.vocab)");
  std::string text;
  for (const auto& m : (*model)["merges"]) {
    if (m.is_string()) {
      text += m.get<std::string>();
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      text += m[0].get<std::string>() + " " + m[1].get<std::string>();
    } else {
      fail("{}: model.merges holds an entry that is neither \"a b\" nor [a, b]", source);
    }
    text += '\n';
  }
  auto merges = parse_merges(text, source + " (model.merges)");

  // Added tokens are stored as plain text, not in the byte-level alphabet.
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string())
        fail("{}: an added_tokens entry lacks an integer \"id\" or a string \"content\"", source);
      int64_t id = t["id"].get<int64_t>();
      std::string content = t["content"].get<std::string>();
      if (id < 0 || id >= kMaxVocab || content.empty())
        fail("{}: added token '{}' is invalid", source, content);
      if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
      if (!tokens[id].empty() && tokens[id] != content) fail("{}: id {} is given to two tokens", source, id);
      tokens[id] = content;
    }
  }
  return {std::move(tokens), std::move(merges)};
}

void save_bpe_vocab(const std::string& dir, const std::vector<std::string>& tokens,
                    const std::vector<std::pair<std::string, std::string>>& merges) {
  make_dirs(dir);
  // Written by hand, in id order, so the file is stable and diffable.
  std::string json = "{";
  bool first = true;
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].empty()) continue;
    if (!first) json += ", ";
    first = false;
    json += nlohmann::json(bytes_to_vocab_text(tokens[id])).dump();
    json += ": " + std::to_string(id);
  }
  json += "}\n";
  std::string text = "#version: 0.2\n";
  for (const auto& [a, b] : merges) text += bytes_to_vocab_text(a) + " " + bytes_to_vocab_text(b) + "\n";
  write_file_atomic(dir + "/vocab.json", json);
  write_file_atomic(dir + "/merges.txt", text);
}

}  // namespace gpt
