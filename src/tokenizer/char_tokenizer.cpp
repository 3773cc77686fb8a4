#include "tokenizer/char_tokenizer.h"

#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "tokenizer/unicode.h"

namespace gpt {

namespace {
// Decodes one whole character, or throws naming the byte offset.
uint32_t single_code_point(std::string_view s, size_t offset, int* len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + offset;
  uint32_t cp;
  *len = decode_utf8(p, reinterpret_cast<const uint8_t*>(s.data()) + s.size(), &cp);
  if (cp == kInvalidCodePoint) fail("text is not valid UTF-8 at byte {}", offset);
  return cp;
}
}  // namespace

CharTokenizer::CharTokenizer(std::vector<std::string> chars) : chars_(std::move(chars)) {
  if (chars_.empty()) fail("character vocabulary is empty");
  uint32_t prev = 0;
  for (size_t id = 0; id < chars_.size(); ++id) {
    int len = 0;
    if (chars_[id].empty()) fail("character vocabulary entry {} is empty", id);
    uint32_t cp = single_code_point(chars_[id], 0, &len);
    if (static_cast<size_t>(len) != chars_[id].size())
      fail("character vocabulary entry {} is not exactly one character", id);
    if (id > 0 && cp <= prev) fail("character vocabulary is not sorted by code point without duplicates");
    prev = cp;
    index_.emplace(cp, static_cast<TokenId>(id));
  }
}

CharTokenizer CharTokenizer::from_text(std::string_view text) {
  std::set<uint32_t> seen;
  for (size_t i = 0; i < text.size();) {
    int len;
    seen.insert(single_code_point(text, i, &len));
    i += static_cast<size_t>(len);
  }
  if (seen.empty()) fail("cannot build a character vocabulary from empty text");
  std::vector<std::string> chars;
  for (uint32_t cp : seen) {
    std::string c;
    append_utf8(c, cp);
    chars.push_back(c);
  }
  return CharTokenizer(std::move(chars));
}

CharTokenizer CharTokenizer::load(const std::string& dir) {
  const std::string path = dir + "/chars.json";
  const nlohmann::json j = parse_json(read_regular_file(path), path);
  if (!j.is_object() || !j.contains("chars") || !j["chars"].is_array())
    fail("{}: expected an object with a \"chars\" array", path);
  std::vector<std::string> chars;
  for (const auto& c : j["chars"]) {
    if (!c.is_string()) fail("{}: every entry of \"chars\" must be a string", path);
    chars.push_back(c.get<std::string>());
  }
  try {
    return CharTokenizer(std::move(chars));
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

std::vector<TokenId> CharTokenizer::encode(std::string_view text, const AllowedSpecial&, int) const {
  std::vector<TokenId> out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    int len;
    uint32_t cp = single_code_point(text, i, &len);
    auto it = index_.find(cp);
    if (it == index_.end()) fail("character U+{:04X} at byte {} is not in the character vocabulary", cp, i);
    out.push_back(it->second);
    i += static_cast<size_t>(len);
  }
  return out;
}

std::string_view CharTokenizer::token_bytes(TokenId id) const {
  if (id >= chars_.size()) fail("token id {} is not in the vocabulary (size {})", id, chars_.size());
  return chars_[id];
}

std::string CharTokenizer::decode(std::span<const TokenId> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (TokenId id : ids) out += token_bytes(id);
  return out;
}

void CharTokenizer::save(const std::string& dir) const {
  make_dirs(dir);
  nlohmann::json j = {{"type", "char"}, {"chars", chars_}};
  write_file_atomic(dir + "/chars.json", j.dump(1) + "\n");
}

}  // namespace gpt
