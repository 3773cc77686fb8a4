// File I/O with clear errors, and atomic writes (temp file, fsync, rename) so no reader ever
// sees a half-written file and a crash never loses the previous version.
#pragma once
#include <string>
#include <string_view>

namespace gpt {

// Whole file as bytes; throws gpt::Error naming the path on failure.
std::string read_file(const std::string& path);

// All of standard input as bytes.
std::string read_stdin();

// Writes `data` to `path` atomically: PATH.tmp.<pid>, fsync, rename over PATH, fsync the directory.
void write_file_atomic(const std::string& path, std::string_view data);

// Creates a directory (and parents) if missing; throws gpt::Error if that fails.
void make_dirs(const std::string& path);

bool file_exists(const std::string& path);

}  // namespace gpt
