// A one-line progress display for long commands (prepare, train). It draws only when stderr is a
// terminal, so logs and pipes stay clean; callers print their own log lines otherwise.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt {

// On a terminal: "label [#####.....] 42% done/total unit · extra · ETA 1m05s", redrawn in place
// at most ~10 times a second. total == 0 means unknown: no bar, percentage or ETA.
class Progress {
 public:
  Progress(std::string label, uint64_t total, std::string unit = "");
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();  // ends a line left open (an error on the way) so the error starts on its own line

  // stderr is a TTY and GPT_NO_PROGRESS is not set (to anything but "0" or "").
  static bool is_terminal();

  // Cheap when called often: a clock read, and a redraw only every 100 ms. An empty `extra`
  // keeps the previous one.
  void update(uint64_t done, std::string_view extra = {});
  // Draws the final state and ends the line (terminal only). Idempotent.
  void finish();

  // The line update() draws (exposed for tests).
  std::string render(uint64_t done, std::string_view extra, double elapsed_s) const;

 private:
  void draw(uint64_t done, std::string_view extra);

  std::string label_, unit_;
  uint64_t total_;
  bool tty_;
  bool drawn_ = false, finished_ = false;
  uint64_t last_done_ = 0;
  std::string last_extra_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "3.2s", "1m05s", "2h03m": short, fixed style for ETAs and elapsed times.
std::string format_duration(double seconds);

// "950", "12.3k", "4.50M", "1.20G": a count in at most ~5 characters.
std::string format_count(uint64_t n);

}  // namespace gpt
