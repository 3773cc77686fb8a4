// A deterministic mixed-text corpus for tokenizer benchmarks: prose, source code, CJK and
// Korean, emoji with ZWJ sequences, long numbers and whitespace edge cases, built from the
// GPT-2 vocabulary's own words so that it has a realistic spread of common and rare words.
#pragma once
#include <cstdint>
#include <string>

namespace gpt {

std::string make_mixed_corpus(size_t target_bytes, uint64_t seed = 20240520);

}  // namespace gpt
