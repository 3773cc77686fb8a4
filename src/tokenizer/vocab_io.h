// Reading and writing vocabulary files: encoder.json / vocab.json (token text -> id, in
// GPT-2's byte-level alphabet) and vocab.bpe / merges.txt (one merge "a b" per line).
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gpt {

// Parses a JSON object {token text: id}; returns tokens[id] = token bytes ("" for unused ids).
// `source` names the file in error messages.
std::vector<std::string> parse_vocab_json(std::string_view json, const std::string& source);

// Parses a merges file: an optional "#version" line, then "a b" per line, in rank order.
std::vector<std::pair<std::string, std::string>> parse_merges(std::string_view text,
                                                              const std::string& source);

// Parses a Hugging Face tokenizer.json holding a byte-level BPE model (model.vocab,
// model.merges as "a b" strings or [a, b] pairs, added_tokens) into tokens[id] and merges.
std::pair<std::vector<std::string>, std::vector<std::pair<std::string, std::string>>> parse_tokenizer_json(
    std::string_view json, const std::string& source);

// Writes DIR/vocab.json and DIR/merges.txt (Hugging Face names), atomically.
void save_bpe_vocab(const std::string& dir, const std::vector<std::string>& tokens,
                    const std::vector<std::pair<std::string, std::string>>& merges);

}  // namespace gpt
