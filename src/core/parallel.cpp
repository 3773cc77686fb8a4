#include "core/parallel.h"

#include <fcntl.h>
#include <omp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/memory.h"

extern "C" void openblas_set_num_threads(int);  // from OpenBLAS (cblas.h is private to ops/)

namespace gpt {
namespace {

std::atomic<int>& ceiling_var() {
  static std::atomic<int> v{std::max(1, omp_get_max_threads())};
  return v;
}
std::atomic<int>& team_var() {
  static std::atomic<int> v{ceiling_var().load()};
  return v;
}

bool adaptive() {
  static const bool on = [] {
    const char* e = std::getenv("GPT_ADAPTIVE_THREADS");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// The calling thread's OpenMP team size (an OpenMP setting is per thread: the server's decode
// thread has its own).
void apply_team(int n) {
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
}

// CPU time, in seconds, that the CPUs this process may run on spent busy, from /proc/stat (user,
// nice, system, irq, softirq and steal: time the hypervisor gave to others counts as busy too).
// Returns a negative number when /proc/stat cannot be read.
class CpuStat {
 public:
  CpuStat() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
      for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) allowed_.push_back(c);
    buf_.resize(1 << 16);
    ticks_ = static_cast<double>(sysconf(_SC_CLK_TCK));
    if (ticks_ <= 0) ticks_ = 100;
  }
  int cpus() const { return static_cast<int>(allowed_.size()); }

  double busy_seconds() {
    const int fd = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = 0;
    for (;;) {
      if (len == buf_.size()) buf_.resize(buf_.size() * 2);  // many CPUs: grows once
      const ssize_t r = ::read(fd, buf_.data() + len, buf_.size() - len);
      if (r <= 0) break;
      len += static_cast<size_t>(r);
    }
    ::close(fd);
    unsigned long long busy = 0;
    const char* p = buf_.data();
    const char* end = p + len;
    while (p < end) {
      const char* eol = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      if (!eol) eol = end;
      // "cpuN user nice system idle iowait irq softirq steal ..." (the first line, "cpu ", is the total)
      if (eol - p > 4 && std::memcmp(p, "cpu", 3) == 0 && p[3] >= '0' && p[3] <= '9') {
        char* q = nullptr;
        const long cpu = std::strtol(p + 3, &q, 10);
        if (std::binary_search(allowed_.begin(), allowed_.end(), static_cast<int>(cpu))) {
          unsigned long long f[8] = {};
          for (int i = 0; i < 8 && q < eol; i++) f[i] = std::strtoull(q, &q, 10);
          busy += f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
        }
      }
      p = eol + 1;
    }
    return static_cast<double>(busy) / ticks_;
  }

 private:
  std::vector<int> allowed_;
  std::vector<char> buf_;
  double ticks_ = 100;
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Governor {
  std::mutex mu;
  CpuStat stat;
  bool primed = false;
  std::chrono::steady_clock::time_point last;
  double last_busy = 0, last_own = 0;
  double others = 0;  // smoothed: CPUs other programs kept busy
};

Governor& governor() {
  static Governor g;
  return g;
}

}  // namespace

namespace {

constexpr int kThreadsPerCpu = 8;
// What each thread reserves: OpenBLAS (0.3.21, Debian's openmp build) maps a 128 MiB buffer per
// thread, and glibc gives a thread a stack of RLIMIT_STACK (32 MiB when that is unlimited).
constexpr uint64_t kBlasBufferBytes = (uint64_t{128} << 20) + (uint64_t{2} << 20);

uint64_t thread_stack_bytes() {
  struct rlimit r {};
  if (::getrlimit(RLIMIT_STACK, &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_cur < (uint64_t{1} << 32))
    return std::max<uint64_t>(r.rlim_cur, uint64_t{1} << 20);
  return uint64_t{32} << 20;
}

// Whether `bytes` more of address space can be mapped now: a reservation that is released at
// once (PROT_NONE, MAP_NORESERVE: no memory is touched or committed).
bool address_space_fits(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 47)) return false;
  void* p = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return false;
  ::munmap(p, bytes);
  return true;
}

bool address_space_limited() {
  struct rlimit r {};
  return ::getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY;
}

void set_ceiling(int n) {
  ceiling_var().store(n);
  team_var().store(n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace

int num_threads() { return ceiling_var().load(); }

int active_threads() { return std::min(team_var().load(), num_threads()); }

int max_threads() {
  const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return kThreadsPerCpu * std::max(cpus, omp_get_num_procs());
}

std::string thread_count_problem(int n) {
  if (n < 1) return fmt::format("{} is not a thread count (at least 1)", n);
  const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (n > max_threads())
    return fmt::format("{} threads is more than {}, the most this machine takes ({} per CPU, {} CPU{})", n,
                       max_threads(), kThreadsPerCpu, cpus, cpus == 1 ? "" : "s");
  if (!address_space_limited()) return "";
  const uint64_t per_thread = kBlasBufferBytes + thread_stack_bytes();
  if (address_space_fits(static_cast<uint64_t>(n) * per_thread)) return "";
  int fits = n - 1;
  while (fits > 1 && !address_space_fits(static_cast<uint64_t>(fits) * per_thread)) fits--;
  return fmt::format(
      "{} threads need about {} of address space ({} each for a stack and OpenBLAS's buffer), more than the "
      "address-space limit (ulimit -v) leaves: use --threads {} or fewer",
      n, format_bytes(static_cast<uint64_t>(n) * per_thread), format_bytes(per_thread), std::max(fits, 1));
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  if (std::string why = thread_count_problem(n); !why.empty()) fail("{}", why);
  set_ceiling(n);
}

void fit_threads_to_address_space() {
  if (!address_space_limited()) return;
  const int n = num_threads();
  const uint64_t per_thread = kBlasBufferBytes + thread_stack_bytes();
  int fits = n;
  while (fits > 1 && !address_space_fits(static_cast<uint64_t>(fits) * per_thread)) fits--;
  if (fits < n) set_ceiling(fits);
}

void set_active_threads(int n) {
  team_var().store(std::clamp(n, 1, num_threads()));
  apply_team(active_threads());
}

int adapted_team_size(int cpus, double others, int current, int ceiling) {
  const double free = static_cast<double>(cpus) - others;
  // Shrink as soon as the free CPUs fall clearly below the team; grow back only when a whole CPU
  // more is clearly free, so that a team does not flap at the edge.
  int n = static_cast<int>(std::floor(free + 0.35));
  if (n > current && free < current + 0.75) n = current;
  return std::clamp(n, 1, std::max(1, ceiling));
}

void adapt_threads() {
  if (!adaptive()) return;
  Governor& g = governor();
  std::unique_lock lock(g.mu, std::try_to_lock);
  if (!lock.owns_lock()) return;
  const auto now = std::chrono::steady_clock::now();
  const int ceiling = num_threads();
  if (g.primed && now - g.last < std::chrono::milliseconds(100)) {
    apply_team(active_threads());
    return;
  }
  const double busy = g.stat.busy_seconds(), own = process_cpu_seconds();
  if (busy < 0 || g.stat.cpus() < 1) return;  // no /proc/stat: nothing to go by
  if (g.primed) {
    const double wall = std::chrono::duration<double>(now - g.last).count();
    const double others = std::max(0.0, ((busy - g.last_busy) - (own - g.last_own)) / wall);
    g.others = 0.5 * g.others + 0.5 * others;
    const int cpus = std::min(g.stat.cpus(), std::max(ceiling, 1));
    // The ceiling may leave CPUs unused: only what others take beyond them counts.
    const double taken = std::max(0.0, g.others - (g.stat.cpus() - cpus));
    team_var().store(adapted_team_size(cpus, taken, active_threads(), ceiling));
  }
  g.primed = true;
  g.last = now;
  g.last_busy = busy;
  g.last_own = own;
  apply_team(active_threads());
}

}  // namespace gpt
