// GPT-2's byte <-> unicode table. Vocabulary files store each token as text in which every
// byte is replaced by one printable character (space -> 'Ġ', newline -> 'Ċ', ...), so that
// arbitrary bytes, even invalid UTF-8, can live in JSON and in a space-separated merges file.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt {

// The printable code point that stands for byte b.
uint32_t byte_to_unicode(uint8_t b);

// Token bytes -> the UTF-8 text of the vocabulary file.
std::string bytes_to_vocab_text(std::string_view bytes);

// Vocabulary-file text -> token bytes. False if a character is not in the table.
bool vocab_text_to_bytes(std::string_view text, std::string* out);

}  // namespace gpt
