// Helpers shared by the unit tests.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/io.h"
#include "tokenizer/ids_text.h"

namespace gpt::test {

// A trainer_state.json at `step` with every field a resume checks (the loader's state included).
inline nlohmann::json trainer_state_at(int64_t step) {
  return nlohmann::json{{"step", step}, {"elapsed_s", 0.0}, {"tokens", 0},
                        {"loader", {{"shard", 0}, {"position", 0}, {"batches", step},
                                    {"rng", {"1", "2", "3", "4"}}}}};
}

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
