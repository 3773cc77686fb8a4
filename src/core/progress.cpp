#include "core/progress.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <unistd.h>

namespace gpt {

namespace {
constexpr int kBarWidth = 20;
constexpr auto kRedrawEvery = std::chrono::milliseconds(100);

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(is_terminal()) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (tty_ && drawn_ && !finished_) std::fputc('\n', stderr);
}

bool Progress::is_terminal() {
  const char* off = std::getenv("GPT_NO_PROGRESS");
  if (off && *off && std::strcmp(off, "0") != 0) return false;
  return ::isatty(STDERR_FILENO) == 1;
}

std::string Progress::render(uint64_t done, std::string_view extra, double elapsed_s) const {
  std::string s = label_;
  const std::string unit = unit_.empty() ? "" : " " + unit_;
  if (total_ > 0) {
    const double frac = std::min(1.0, double(done) / double(total_));
    const int filled = static_cast<int>(frac * kBarWidth);
    s += " [" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "]";
    s += fmt::format(" {:3d}% {}/{}{}", static_cast<int>(frac * 100), format_count(done),
                     format_count(total_), unit);
  } else {
    s += fmt::format(" {}{}", format_count(done), unit);
  }
  if (!extra.empty()) s += fmt::format(" \u00b7 {}", extra);
  // The ETA assumes the rate so far holds; it is left out until there is a rate to go on.
  if (total_ > 0 && done > 0 && done < total_ && elapsed_s > 0.5)
    s += " \u00b7 ETA " + format_duration(elapsed_s * double(total_ - done) / double(done));
  else if (total_ > 0 && done >= total_)
    s += " \u00b7 " + format_duration(elapsed_s);
  return s;
}

void Progress::draw(uint64_t done, std::string_view extra) {
  // \r returns to the line start; ESC[K clears what a longer previous line left behind.
  const std::string line = "\r" + render(done, extra, seconds_since(start_)) + "\x1b[K";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::update(uint64_t done, std::string_view extra) {
  if (!tty_ || finished_) return;
  last_done_ = done;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < kRedrawEvery) {
    if (!extra.empty()) last_extra_.assign(extra);
    return;
  }
  last_draw_ = now;
  if (!extra.empty()) last_extra_.assign(extra);
  draw(done, last_extra_);
}

void Progress::finish() {
  if (!tty_ || finished_) return;
  draw(total_ > 0 ? std::max(last_done_, total_) : last_done_, last_extra_);
  std::fputc('\n', stderr);
  finished_ = true;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 59.95) return fmt::format("{:.1f}s", seconds);
  const long long s = std::llround(seconds);
  if (s < 3600) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  const long long m = std::llround(seconds / 60);
  return fmt::format("{}h{:02d}m", m / 60, m % 60);
}

std::string format_count(uint64_t n) {
  if (n < 10000) return std::to_string(n);
  const char* suffix = "kMGTPE";
  double v = double(n);
  int i = -1;
  while (v >= 999.5 && i < 5) {
    v /= 1000;
    ++i;
  }
  const int decimals = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
  return fmt::format("{:.{}f}{}", v, decimals, suffix[i]);
}

}  // namespace gpt
