#include "core/memory.h"

#include <cstdio>
#include <cstring>

namespace gpt {

size_t peak_rss_bytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmHWM:", 6) == 0) std::sscanf(line + 6, "%zu", &kb);
  std::fclose(f);
  return kb * 1024;
}

}  // namespace gpt
