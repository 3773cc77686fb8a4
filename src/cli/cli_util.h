// Small helpers shared by the subcommands.
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace gpt::cli {

// Resolves --vocab DIR / --tokenizer SPEC (at most one of them) to a tokenizer.
inline std::shared_ptr<const Tokenizer> pick_tokenizer(const std::string& vocab, const std::string& spec) {
  if (!vocab.empty() && !spec.empty()) fail("give --vocab or --tokenizer, not both");
  return tokenizer_from_spec(vocab.empty() ? spec : vocab);
}

// Writes bytes to stdout, failing loudly (e.g. on a full disk) rather than losing output.
inline void write_stdout(std::string_view data) {
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), stdout) != data.size())
    fail("cannot write to standard output");
  if (std::fflush(stdout) != 0) fail("cannot write to standard output");
}

// 1234567 -> "1,234,567"
inline std::string with_commas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace gpt::cli
