// The SVG loss plot: well-formed, one polyline per series, every point inside the plot area and
// placed where its step and loss say.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <regex>

#include "core/io.h"
#include "test_util.h"
#include "train/plot.h"

using namespace gpt;

namespace {

// A minimal XML check: tags nest and close, exactly one root element, attributes quoted.
void expect_well_formed(const std::string& xml) {
  std::vector<std::string> open;
  int roots = 0;
  size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string::npos) {
    const size_t end = xml.find('>', pos);
    ASSERT_NE(end, std::string::npos) << "unterminated tag at " << pos;
    const std::string tag = xml.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.starts_with("?")) {
      ASSERT_TRUE(tag.ends_with("?"));
      continue;
    }
    ASSERT_EQ(std::count(tag.begin(), tag.end(), '"') % 2, 0) << tag;
    if (tag.starts_with("/")) {
      ASSERT_FALSE(open.empty()) << "stray </" << tag;
      ASSERT_EQ(open.back(), tag.substr(1));
      open.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" /"));
    if (open.empty()) ++roots;
    if (!tag.ends_with("/")) open.push_back(name);
  }
  EXPECT_TRUE(open.empty()) << "unclosed <" << (open.empty() ? "" : open.back());
  EXPECT_EQ(roots, 1);
}

std::vector<std::vector<std::pair<double, double>>> polylines(const std::string& svg) {
  std::vector<std::vector<std::pair<double, double>>> out;
  const std::regex poly("<polyline[^>]* points=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), poly); it != std::sregex_iterator(); ++it) {
    std::vector<std::pair<double, double>> pts;
    const std::string s = (*it)[1];
    const std::regex pair(R"((-?[0-9.]+),(-?[0-9.]+))");
    for (auto p = std::sregex_iterator(s.begin(), s.end(), pair); p != std::sregex_iterator(); ++p)
      pts.emplace_back(std::stod((*p)[1]), std::stod((*p)[2]));
    out.push_back(pts);
  }
  return out;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(Plot, NiceTicks) {
  EXPECT_EQ(nice_ticks(0, 1000), (std::vector<double>{0, 200, 400, 600, 800, 1000}));
  EXPECT_EQ(nice_ticks(2.43, 10.97), (std::vector<double>{2, 4, 6, 8, 10, 12}));
  const auto t = nice_ticks(0.013, 0.059);  // step 0.01
  ASSERT_EQ(t.size(), 6u);
  EXPECT_NEAR(t.front(), 0.01, 1e-12);
  EXPECT_NEAR(t.back(), 0.06, 1e-12);
  const auto one = nice_ticks(5, 5);  // degenerate: widened, still covers the value
  EXPECT_LT(one.front(), 5);
  EXPECT_GT(one.back(), 5);
}

TEST(Plot, TrainAndValCurves) {
  std::vector<CurvePoint> train, val;
  for (int s = 0; s <= 1000; s += 10) train.push_back({double(s), 11.0 - 8.0 * s / 1000.0});
  for (int s = 0; s <= 1000; s += 250) val.push_back({double(s), 11.2 - 8.0 * s / 1000.0});
  const std::string svg = loss_plot_svg("gpt2 <tiny> & co", {{"train", train}, {"val", val}});
  expect_well_formed(svg);
  EXPECT_NE(svg.find("gpt2 &lt;tiny&gt; &amp; co"), std::string::npos);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">val</text>"), std::string::npos);

  const auto lines = polylines(svg);
  ASSERT_EQ(lines.size(), 2u);
  ASSERT_EQ(lines[0].size(), train.size());
  ASSERT_EQ(lines[1].size(), val.size());
  // Inside the plot frame (the <rect> drawn with stroke="black").
  const std::regex frame(
      R"re(<rect x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)" fill="none" stroke="black")re");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, frame));
  const double x0 = std::stod(m[1]), y0 = std::stod(m[2]), x1 = x0 + std::stod(m[3]),
               y1 = y0 + std::stod(m[4]);
  for (const auto& line : lines)
    for (auto [x, y] : line) {
      EXPECT_GE(x, x0 - 0.05);
      EXPECT_LE(x, x1 + 0.05);
      EXPECT_GE(y, y0 - 0.05);
      EXPECT_LE(y, y1 + 0.05);
    }
  // Linear in step and loss: x evenly spaced; SVG y grows downwards, so a falling loss has growing y.
  const auto& tr = lines[0];
  const double dx = tr[1].first - tr[0].first;
  EXPECT_GT(dx, 0);
  for (size_t i = 1; i < tr.size(); ++i) {
    EXPECT_NEAR(tr[i].first - tr[i - 1].first, dx, 0.11);
    EXPECT_GT(tr[i].second, tr[i - 1].second);
  }
  // The axes run over the outer ticks: steps 0..1000, loss 2..12 (losses span 3..11.2).
  const double h = y1 - y0;
  EXPECT_NEAR(tr.front().first, x0, 0.06);
  EXPECT_NEAR(tr.back().first, x1, 0.06);
  EXPECT_NEAR(tr.front().second, y0 + 0.1 * h, 0.06);         // loss 11
  EXPECT_NEAR(tr.back().second, y0 + 0.9 * h, 0.06);          // loss 3
  EXPECT_NEAR(lines[1].front().second, y0 + 0.08 * h, 0.06);  // val loss 11.2
}

TEST(Plot, EmptyAndSinglePointSeries) {
  const std::string empty = loss_plot_svg("nothing yet", {{"train", {}}, {"val", {}}});
  expect_well_formed(empty);
  EXPECT_EQ(count(empty, "<polyline"), 0u);
  EXPECT_NE(empty.find("no data"), std::string::npos);
  EXPECT_NE(empty.find(">train</text>"), std::string::npos);

  const std::string one = loss_plot_svg("one", {{"train", {{0, 10.9}}}, {"val", {}}});
  expect_well_formed(one);
  EXPECT_EQ(count(one, "<polyline"), 1u);
  EXPECT_EQ(count(one, "<circle"), 1u);
  EXPECT_EQ(one.find("nan"), std::string::npos);
  EXPECT_EQ(one.find("inf"), std::string::npos);

  const std::string none = loss_plot_svg("no series", {});
  expect_well_formed(none);
}

TEST(Plot, WritesTheFileAtomically) {
  const std::string dir = test::temp_dir("plot");
  const std::string path = dir + "/loss.svg";
  write_loss_plot_svg(path, "t", {{"train", {{1, 2}, {2, 1}}}});
  EXPECT_EQ(read_file(path), loss_plot_svg("t", {{"train", {{1, 2}, {2, 1}}}}));
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
  std::filesystem::remove_all(dir);
}
