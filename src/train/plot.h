// Charts as standalone SVG files, no plotting library, viewable in any browser: a loss curve, and a
// heat map (the logit lens of gpt inspect).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace gpt {

struct CurvePoint {
  double step;
  double value;
};

// Writes an SVG line chart atomically: x = step, y = loss, one <polyline> per non-empty series
// (a series with a single point also gets a <circle> so it is visible), a legend with every series
// name, axes with ~5 round-number ticks each, and the title. Points that are not finite are
// skipped. With no points at all the chart says "no data".
void write_loss_plot_svg(const std::string& path, const std::string& title,
                         const std::vector<std::pair<std::string, std::vector<CurvePoint>>>& series);

// The SVG text that write_loss_plot_svg writes (exposed for tests).
std::string loss_plot_svg(const std::string& title,
                          const std::vector<std::pair<std::string, std::vector<CurvePoint>>>& series);

// A grid of cells coloured by a value in [0, 1] (white to dark blue), each with an optional text.
struct HeatMap {
  std::string title;
  std::string x_title, y_title;                     // the axes' captions
  std::vector<std::string> col_labels, row_labels;  // left to right, top to bottom
  std::vector<double> values;                       // [rows][cols], clamped to [0, 1]
  std::vector<std::string> text;                    // [rows][cols] or empty
  std::string scale_label;                          // the colour bar's caption
};

// The SVG text of a heat map, and the file (written atomically). Throws gpt::Error when values (or
// a non-empty text) do not have rows x cols entries.
std::string heat_map_svg(const HeatMap& m);
void write_heat_map_svg(const std::string& path, const HeatMap& m);

// Round tick positions ("nice numbers": 1, 2 or 5 times a power of ten) covering [lo, hi],
// about `target` of them; the first is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

}  // namespace gpt
