// libFuzzer: core/json.h, the one JSON reader. Any bytes either give a value or a one-line reason
// without the library's tags; an accepted value nests at most kMaxJsonDepth levels (so nothing that
// walks it recursively can overflow the stack), and it serialises and reads back to itself.
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/json.h"

namespace {

// The nesting depth of v, without recursion.
int depth_of(const nlohmann::json& v) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> todo{{&v, 0}};
  while (!todo.empty()) {
    auto [j, d] = todo.back();
    todo.pop_back();
    if (!j->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& child : *j) todo.push_back({&child, d + 1});
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string why;
  const std::optional<nlohmann::json> j = gpt::try_parse_json(text, &why);
  if (!j) {
    // (The reason may quote the input, which may say anything: the library's tag starts its message.)
    if (why.empty() || why.rfind("[json.exception", 0) == 0 || why.find('\n') != std::string::npos ||
        why.size() > 400)
      std::abort();
    try {  // the throwing form says the same
      gpt::parse_json(text, "fuzz.json");
      std::abort();
    } catch (const gpt::Error& e) {
      if (std::string(e.what()) != "fuzz.json: not valid JSON (" + why + ")") std::abort();
    }
    return 0;
  }
  if (depth_of(*j) > gpt::kMaxJsonDepth) std::abort();
  const std::string dumped = j->dump();  // parsed strings are valid UTF-8: no exception
  const std::optional<nlohmann::json> again = gpt::try_parse_json(dumped, &why);
  if (!again || *again != *j) std::abort();
  gpt::json_excerpt(*j);
  return 0;
}
