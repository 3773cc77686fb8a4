// What the CPU we run on can do, detected once at run time. Hot code picks its kernel from
// this (never from -march=native), so one binary runs on every x86-64 and uses the best path.
#pragma once
#include <string>

namespace gpt {

struct CpuFeatures {
  std::string vendor;     // "GenuineIntel", "AuthenticAMD", ...
  std::string brand;      // model name
  bool avx2 = false;      // with FMA
  bool avx512f = false;   // AVX-512 foundation, OS-enabled
  bool avx512bw = false;  // byte/word ops (used by the text scanners)
  bool avx512vl = false;
  bool avx512bf16 = false;  // bf16 dot products
  bool avx512vnni = false;  // int8 dot products
  bool amx_tile = false;    // AMX tiles, OS-enabled and permitted for this process
  bool amx_bf16 = false;
  bool amx_int8 = false;
  int logical_cores = 1;

  // The best instruction-set level we dispatch on: "avx512", "avx2" or "scalar".
  std::string level() const;
  // One line listing the features, for `gpt info` and benchmark headers.
  std::string summary() const;
};

// Detected on first call; thread-safe. GPT_CPU=scalar|avx2|avx512 caps the level (for tests).
const CpuFeatures& cpu();

}  // namespace gpt
