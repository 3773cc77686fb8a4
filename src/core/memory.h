// Process memory figures: for the benchmarks, and for failing early, with the size, when a shape
// cannot fit (rather than a plain "out of memory" from deep inside an allocation).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt {

// Peak resident set size of this process in bytes (VmHWM), or 0 where unknown.
size_t peak_rss_bytes();

// Virtual memory this process has mapped now (VmSize), or 0 where unknown.
size_t mapped_bytes();

// "512 B", "3.3 GB", "13.2 TB": decimal units, three significant digits.
std::string format_bytes(uint64_t bytes);

// The most memory this process could ever get, and what sets it ("this machine's 23.4 GB of RAM
// and swap", "the address-space limit (ulimit -v) of 1.9 GB, 0.3 GB of it in use", "the cgroup
// limit of 8 GB"): the smallest of physical memory plus swap, the cgroup's memory.max and what
// RLIMIT_AS leaves. A bound, not a promise: memory in use by others is not subtracted.
struct MemoryLimit {
  uint64_t bytes = UINT64_MAX;
  std::string what;
};
MemoryLimit memory_limit();

// Throws gpt::Error "needs X of memory for WHAT, more than Y" when `bytes` exceeds memory_limit():
// called with sizes computed before the allocation they describe.
void require_memory(uint64_t bytes, std::string_view what);

}  // namespace gpt
