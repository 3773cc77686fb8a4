#include "train/plot.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "core/io.h"

namespace gpt {

namespace {

// Canvas and plot-area geometry, in SVG user units (pixels).
constexpr double kWidth = 720, kHeight = 440;
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Enough decimals to tell ticks `step` apart, no more.
std::string tick_label(double v, double step) {
  const int decimals = std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 6);
  if (std::fabs(v) < step * 1e-6) v = 0;  // no "-0.0"
  return fmt::format("{:.{}f}", v, decimals);
}

// A degenerate range (one point, or a flat line) is widened so ticks and scaling still work.
void widen(double& lo, double& hi) {
  if (hi > lo) return;
  const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
  lo -= pad;
  hi += pad;
}

// An SVG document's opening: the size, a white background and the title centred on top.
template <typename W, typename H>
std::string svg_open(W width, H height, const std::string& title) {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      width, height, width / 2, xml_escape(title));
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) widen(lo, hi);
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 5.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  // Ticks are integer multiples of the step (not a running sum, which would drift).
  const double k0 = std::floor(lo / step + 1e-9);
  std::vector<double> ticks;
  for (int k = 0; k <= 100; ++k) {
    ticks.push_back((k0 + k) * step);
    if (ticks.back() >= hi - step * 1e-9) break;
  }
  return ticks;
}

std::string loss_plot_svg(const std::string& title,
                          const std::vector<std::pair<std::string, std::vector<CurvePoint>>>& series) {
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  size_t points = 0;
  for (const auto& s : series)
    for (const auto& p : s.second) {
      if (!std::isfinite(p.step) || !std::isfinite(p.value)) continue;
      x_lo = std::min(x_lo, p.step), x_hi = std::max(x_hi, p.step);
      y_lo = std::min(y_lo, p.value), y_hi = std::max(y_hi, p.value);
      ++points;
    }
  if (points == 0) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  const std::vector<double> xt = nice_ticks(x_lo, x_hi), yt = nice_ticks(y_lo, y_hi);
  // The axes span the outer ticks, so every point lies inside the plot area.
  x_lo = xt.front(), x_hi = xt.back(), y_lo = yt.front(), y_hi = yt.back();
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * pw; };
  auto py = [&](double y) { return kTop + ph - (y - y_lo) / (y_hi - y_lo) * ph; };

  std::string svg = svg_open(kWidth, kHeight, title);
  // Grid lines and tick labels, then the frame on top of them.
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double t : xt)
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e0e0e0\"/>"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
        px(t), kTop, kTop + ph, kTop + ph + 16, tick_label(t, xstep));
  for (double t : yt)
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e0e0e0\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
        kLeft, py(t), kLeft + pw, kLeft - 6, py(t) + 4, tick_label(t, ystep));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n",
                     kLeft, kTop, pw, ph);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", kLeft + pw / 2,
                     kHeight - 12);
  svg += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">loss</text>\n",
      kTop + ph / 2);
  if (points == 0)
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
                       kLeft + pw / 2, kTop + ph / 2);

  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % std::size(kColors)];
    std::string pts;
    size_t n = 0;
    double last_x = 0, last_y = 0;
    for (const auto& p : series[i].second) {
      if (!std::isfinite(p.step) || !std::isfinite(p.value)) continue;
      last_x = px(p.step), last_y = py(p.value);
      pts += fmt::format("{}{:.1f},{:.1f}", n++ ? " " : "", last_x, last_y);
    }
    if (n > 0)
      svg += fmt::format(
          "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" stroke-linejoin=\"round\" "
          "points=\"{}\"/>\n",
          color, pts);
    if (n == 1)
      svg +=
          fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", last_x, last_y, color);
  }

  // The legend goes last, top right on a white box, so curves passing under it stay readable.
  size_t longest = 0;
  for (const auto& s : series) longest = std::max(longest, s.first.size());
  const double legend_w = 44 + 7 * static_cast<double>(longest), lx = kLeft + pw - legend_w - 6;
  if (!series.empty())
    svg += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" "
        "fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
        lx - 6, kTop + 6, legend_w, 18 * static_cast<double>(series.size()) + 8);
  for (size_t i = 0; i < series.size(); ++i) {
    const double ly = kTop + 18 + 18 * static_cast<double>(i);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2.5\"/>"
        "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
        lx, ly, lx + 22, kColors[i % std::size(kColors)], lx + 28, ly + 4, xml_escape(series[i].first));
  }
  svg += "</svg>\n";
  return svg;
}

namespace {

// White (0) to dark blue (1).
std::string heat_colour(double v) {
  v = std::clamp(std::isfinite(v) ? v : 0.0, 0.0, 1.0);
  auto mix = [&](int lo, int hi) { return static_cast<int>(std::lround(lo + (hi - lo) * v)); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(255, 8), mix(255, 48), mix(255, 107));
}

// At most n characters (code points) of s, with an ellipsis when cut.
std::string clip_text(const std::string& s, size_t n) {
  size_t chars = 0, i = 0;
  for (; i < s.size(); i++)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && chars++ == n) break;
  return i < s.size() ? s.substr(0, i) + "\u2026" : s;
}

}  // namespace

std::string heat_map_svg(const HeatMap& m) {
  const size_t rows = m.row_labels.size(), cols = m.col_labels.size();
  if (m.values.size() != rows * cols)
    fail("heat map: {} values for {} rows and {} columns", m.values.size(), rows, cols);
  if (!m.text.empty() && m.text.size() != rows * cols)
    fail("heat map: {} texts for {} rows and {} columns", m.text.size(), rows, cols);
  constexpr double kCellW = 84, kCellH = 26, kBarW = 160;
  size_t row_label = 0;
  for (const auto& r : m.row_labels) row_label = std::max(row_label, r.size());
  const double left = 40 + 7 * static_cast<double>(row_label), top = 78;
  const double grid_w = kCellW * static_cast<double>(cols), grid_h = kCellH * static_cast<double>(rows);
  const double width = std::max(left + grid_w + 20, kBarW + 80), height = top + grid_h + 70;
  std::string svg = svg_open(width, height, m.title);
  svg += fmt::format("<text x=\"{}\" y=\"48\" text-anchor=\"middle\">{}</text>\n", left + grid_w / 2,
                     xml_escape(m.x_title));
  svg += fmt::format(
      "<text x=\"14\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {0})\">{1}</text>\n",
      top + grid_h / 2, xml_escape(m.y_title));
  for (size_t c = 0; c < cols; c++)
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       left + kCellW * (static_cast<double>(c) + 0.5), top - 8,
                       xml_escape(clip_text(m.col_labels[c], 10)));
  for (size_t r = 0; r < rows; r++) {
    const double y = top + kCellH * static_cast<double>(r);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 6,
                       y + kCellH / 2 + 4, xml_escape(m.row_labels[r]));
    for (size_t c = 0; c < cols; c++) {
      const double v = m.values[r * cols + c], x = left + kCellW * static_cast<double>(c);
      svg += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ddd\"/>", x, y,
          kCellW, kCellH, heat_colour(v));
      if (!m.text.empty())
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
                           x + kCellW / 2, y + kCellH / 2 + 4, v > 0.55 ? "white" : "black",
                           xml_escape(clip_text(m.text[r * cols + c], 10)));
      svg += "\n";
    }
  }
  // The colour bar: 0 .. 1 under the grid.
  const double by = top + grid_h + 24;
  for (int i = 0; i < 20; i++)
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"12\" fill=\"{}\"/>",
                       left + kBarW / 20 * i, by, kBarW / 20 + 0.5, heat_colour((i + 0.5) / 20));
  svg += fmt::format(
      "\n<rect x=\"{0}\" y=\"{1}\" width=\"{2}\" height=\"12\" fill=\"none\" stroke=\"#888\"/>"
      "<text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">0</text><text x=\"{4}\" y=\"{3}\" "
      "text-anchor=\"middle\">1</text><text x=\"{5}\" y=\"{6}\">{7}</text>\n",
      left, by, kBarW, by + 26, left + kBarW, left + kBarW + 10, by + 10, xml_escape(m.scale_label));
  svg += "</svg>\n";
  return svg;
}

void write_heat_map_svg(const std::string& path, const HeatMap& m) {
  write_file_atomic(path, heat_map_svg(m));
}

void write_loss_plot_svg(const std::string& path, const std::string& title,
                         const std::vector<std::pair<std::string, std::vector<CurvePoint>>>& series) {
  write_file_atomic(path, loss_plot_svg(title, series));
}

}  // namespace gpt
