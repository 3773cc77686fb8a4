// A loss curve as a standalone SVG file: no plotting library, viewable in any browser.
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

// Round tick positions ("nice numbers": 1, 2 or 5 times a power of ten) covering [lo, hi],
// about `target` of them; the first is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

}  // namespace gpt
