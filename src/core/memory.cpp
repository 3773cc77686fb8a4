#include "core/memory.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "core/error.h"

namespace gpt {

namespace {

// A "Vm...:" line of /proc/self/status in bytes, or 0.
size_t status_kb_field(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t kb = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0) std::sscanf(line + n, "%zu", &kb);
  std::fclose(f);
  return kb * 1024;
}

}  // namespace

size_t peak_rss_bytes() { return status_kb_field("VmHWM:"); }

size_t mapped_bytes() { return status_kb_field("VmSize:"); }

std::string format_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1000.0 && u + 1 < std::size(units)) {
    v /= 1000.0;
    u++;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.{}f} {}", v, v < 10 ? 2 : v < 100 ? 1 : 0, units[u]);
}

MemoryLimit memory_limit() {
  MemoryLimit m;
  struct sysinfo si {};
  if (::sysinfo(&si) == 0) {
    const uint64_t unit = si.mem_unit ? si.mem_unit : 1;
    m.bytes = (static_cast<uint64_t>(si.totalram) + si.totalswap) * unit;
    m.what = fmt::format("this machine's {} of memory (RAM and swap)", format_bytes(m.bytes));
  }
  // A container's limit (cgroup v2): exceeding it ends the process without an error.
  std::ifstream cg("/sys/fs/cgroup/memory.max");
  std::string v;
  if (cg >> v && v != "max") {
    char* end = nullptr;
    const unsigned long long b = std::strtoull(v.c_str(), &end, 10);
    if (end && *end == '\0' && b > 0 && b < m.bytes) {
      m.bytes = b;
      m.what = fmt::format("the cgroup memory limit of {}", format_bytes(b));
    }
  }
  struct rlimit r {};
  if (::getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    const uint64_t used = mapped_bytes();
    const uint64_t left = r.rlim_cur > used ? r.rlim_cur - used : 0;
    if (left < m.bytes) {
      m.bytes = left;
      m.what = fmt::format("the {} that the address-space limit (ulimit -v) of {} leaves", format_bytes(left),
                           format_bytes(r.rlim_cur));
    }
  }
  return m;
}

void require_memory(uint64_t bytes, std::string_view what) {
  const MemoryLimit m = memory_limit();
  if (bytes > m.bytes) fail("needs {} of memory for {}, more than {}", format_bytes(bytes), what, m.what);
}

}  // namespace gpt
