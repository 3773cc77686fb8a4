// One exception type for every user-facing failure: its message is the one line the CLI prints.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace gpt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The readable part of a JSON library error ("number overflow parsing '1e999'", "syntax error
// while parsing value - ..."), without the library's "[json.exception.xxx.nnn]" tag.
inline std::string json_error_text(const std::exception& e) {
  std::string w = e.what();
  if (w.rfind("[json.exception.", 0) == 0) {
    const size_t p = w.find("] ");
    if (p != std::string::npos) w.erase(0, p + 2);
  }
  if (w.rfind("parse error at ", 0) == 0) w.erase(0, 15);
  return w;
}

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace gpt
