// Process memory figures for the benchmarks.
#pragma once
#include <cstddef>

namespace gpt {

// Peak resident set size of this process in bytes (VmHWM), or 0 where unknown.
size_t peak_rss_bytes();

}  // namespace gpt
