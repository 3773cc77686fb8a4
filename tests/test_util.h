// Helpers shared by the unit tests.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/io.h"
#include "tokenizer/ids_text.h"

namespace gpt::test {

inline std::string source_path(const std::string& rel) { return std::string(GPT_SOURCE_DIR) + "/" + rel; }

inline std::string read_source(const std::string& rel) { return read_file(source_path(rel)); }

// Reads a fixture of decimal ids, one per line.
inline std::vector<uint32_t> read_ids(const std::string& rel) { return parse_ids(read_source(rel)); }

inline std::string temp_dir(const std::string& name) {
  std::string dir = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) +
                    "/gpt_test_" + name + "_" + std::to_string(::getpid());
  make_dirs(dir);
  return dir;
}

}  // namespace gpt::test
