#include "core/cpu.h"

#include <cpuid.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <sys/syscall.h>
#include <unistd.h>

namespace gpt {

namespace {

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Linux gives a process AMX tile state only after it asks (arch_prctl ARCH_REQ_XCOMP_PERM).
bool request_amx_permission() {
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtileData = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

CpuFeatures detect() {
  CpuFeatures f;
  f.logical_cores = static_cast<int>(std::thread::hardware_concurrency());
  if (f.logical_cores <= 0) f.logical_cores = 1;

  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;

  char brand[49] = {};
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002 + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
  }
  f.brand = brand;
  while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();

  __get_cpuid(1, &a, &b, &c, &d);
  bool osxsave = c & (1u << 27);
  bool fma = c & (1u << 12);
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  bool os_avx = (xcr0 & 0x6) == 0x6;          // XMM + YMM state
  bool os_avx512 = (xcr0 & 0xE6) == 0xE6;     // + opmask, ZMM hi
  bool os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG + XTILEDATA
  if (max_leaf < 7) return f;

  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_subleaf7 = a;
  f.avx2 = os_avx && fma && (b & (1u << 5));
  f.avx512f = os_avx512 && (b & (1u << 16));
  f.avx512bw = f.avx512f && (b & (1u << 30));
  f.avx512vl = f.avx512f && (b & (1u << 31));
  f.avx512vnni = f.avx512f && (c & (1u << 11));
  bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
  if (max_subleaf7 >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = f.avx512f && (a & (1u << 5));
  }

  // Optional cap, so tests can exercise the portable paths on any machine.
  std::string cap = std::getenv("GPT_CPU") ? std::getenv("GPT_CPU") : "";
  if (!cap.empty() && cap != "scalar" && cap != "avx2" && cap != "avx512")
    std::fprintf(stderr, "gpt: warning: ignoring GPT_CPU=%s (use scalar, avx2 or avx512)\n", cap.c_str());
  if (cap == "scalar" || cap == "avx2")
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512bf16 = f.avx512vnni = false;
  if (cap == "scalar") f.avx2 = false;
  if (cap.empty() || cap == "avx512") {
    // Asked for only when usable: the kernel then reserves tile state for this process.
    if (os_amx && amx_tile && request_amx_permission()) {
      f.amx_tile = true;
      f.amx_bf16 = amx_bf16;
      f.amx_int8 = amx_int8;
    }
  }
  return f;
}

}  // namespace

std::string CpuFeatures::level() const {
  if (avx512f && avx512bw && avx512vl) return "avx512";
  if (avx2) return "avx2";
  return "scalar";
}

std::string CpuFeatures::summary() const {
  std::string s = brand.empty() ? vendor : brand;
  s += " | " + std::to_string(logical_cores) + " threads | dispatch " + level() + " |";
  auto add = [&](bool on, const char* name) {
    if (on) (s += ' ') += name;
  };
  add(avx2, "avx2");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512bf16, "avx512bf16");
  add(avx512vnni, "avx512vnni");
  add(amx_tile, "amx-tile");
  add(amx_bf16, "amx-bf16");
  add(amx_int8, "amx-int8");
  return s;
}

const CpuFeatures& cpu() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace gpt
