#include "dist/shard.h"

#include <algorithm>

#include "core/error.h"

namespace gpt::dist {

std::vector<Range> shard_ranges(size_t n, int ranks) {
  if (ranks < 1) fail("shard_ranges: {} ranks", ranks);
  const size_t R = static_cast<size_t>(ranks), base = n / R, extra = n % R;
  std::vector<Range> out(R);
  size_t at = 0;
  for (size_t r = 0; r < R; r++) {
    out[r].begin = at;
    at += base + (r < extra ? 1 : 0);
    out[r].end = at;
  }
  return out;
}

std::vector<size_t> shard_counts(size_t n, int ranks) {
  std::vector<size_t> c;
  for (const Range& r : shard_ranges(n, ranks)) c.push_back(r.size());
  return c;
}

std::vector<Segment> shard_segments(const std::vector<ParamInfo>& layout, Range r) {
  std::vector<Segment> out;
  for (const ParamInfo& p : layout) {
    const size_t lo = std::max(r.begin, p.offset), hi = std::min(r.end, p.offset + p.numel);
    if (lo < hi) out.push_back({lo, hi - lo, p.decay});
  }
  return out;
}

}  // namespace gpt::dist
