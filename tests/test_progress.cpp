// The progress line's text and the duration/count formats it uses.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/progress.h"

using namespace gpt;

TEST(Progress, FormatDuration) {
  EXPECT_EQ(format_duration(0), "0.0s");
  EXPECT_EQ(format_duration(3.21), "3.2s");
  EXPECT_EQ(format_duration(59.9), "59.9s");
  EXPECT_EQ(format_duration(59.97), "1m00s");  // no "60.0s"
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(3599.4), "59m59s");
  EXPECT_EQ(format_duration(3599.6), "1h00m");
  EXPECT_EQ(format_duration(2 * 3600 + 3 * 60 + 10), "2h03m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(1.0 / 0.0), "?");
}

TEST(Progress, FormatCount) {
  EXPECT_EQ(format_count(0), "0");
  EXPECT_EQ(format_count(9999), "9999");
  EXPECT_EQ(format_count(10000), "10.0k");
  EXPECT_EQ(format_count(123456), "123k");
  EXPECT_EQ(format_count(999499), "999k");
  EXPECT_EQ(format_count(999500), "1.00M");
  EXPECT_EQ(format_count(4500000), "4.50M");
  EXPECT_EQ(format_count(1200000000), "1.20G");
}

TEST(Progress, RenderedLine) {
  Progress p("prepare", 200, "MB");
  // A quarter done after 10 s: 30 s to go at that rate.
  EXPECT_EQ(p.render(50, "3.1 MB/s", 10.0),
            "prepare [#####...............]  25% 50/200 MB \u00b7 3.1 MB/s \u00b7 ETA 30.0s");
  EXPECT_EQ(p.render(0, {}, 0.0), "prepare [....................]   0% 0/200 MB");
  // Done: the elapsed time instead of an ETA; overshoot is clamped to 100%.
  EXPECT_EQ(p.render(250, {}, 65.0), "prepare [####################] 100% 250/200 MB \u00b7 1m05s");
  Progress open_ended("tokens", 0);
  EXPECT_EQ(open_ended.render(123456, "x", 5.0), "tokens 123k \u00b7 x");
}

TEST(Progress, SilentWhenDisabled) {
  ::setenv("GPT_NO_PROGRESS", "1", 1);
  EXPECT_FALSE(Progress::is_terminal());
  Progress p("x", 10);
  testing::internal::CaptureStderr();
  p.update(5, "e");
  p.finish();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ::unsetenv("GPT_NO_PROGRESS");
}
