#include "tokenizer/vocab_io.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "tokenizer/byte_level.h"

namespace gpt {

namespace {
// Ids beyond this are surely a corrupt file, not a vocabulary (GPT-2 has 50,257).
constexpr int64_t kMaxVocab = 1 << 24;
}  // namespace

std::vector<std::string> parse_vocab_json(std::string_view json, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json.begin(), json.end());
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON (byte {})", source, e.byte);
  }
  if (!j.is_object()) fail("{}: expected a JSON object mapping tokens to ids", source);
  if (j.empty()) fail("{}: the vocabulary is empty", source);
  std::vector<std::string> tokens;
  std::string bytes;
  for (const auto& [text, value] : j.items()) {
    if (!value.is_number_integer()) fail("{}: the id of token '{}' is not an integer", source, text);
    int64_t id = value.get<int64_t>();
    if (id < 0 || id >= kMaxVocab) fail("{}: token '{}' has an id out of range ({})", source, text, id);
    if (!vocab_text_to_bytes(text, &bytes) || bytes.empty())
      fail("{}: token '{}' is not written in GPT-2's byte-level alphabet", source, text);
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
    if (!tokens[id].empty()) fail("{}: id {} is given to two tokens", source, id);
    tokens[id] = bytes;
  }
  return tokens;
}

std::vector<std::pair<std::string, std::string>> parse_merges(std::string_view text, const std::string& source) {
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
