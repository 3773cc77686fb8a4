// Beam reordering over a map from logical rows (what callers see) to physical cache rows, shared by
// the CPU decoder and the device decoder: rows move by relabelling, and a cache is copied only
// where a parent has more than one child.
#pragma once
#include <algorithm>
#include <span>
#include <vector>

#include "core/error.h"

namespace gpt {

// New logical row i = old logical row parents[i] for i < parents.size(); rows beyond are emptied.
// phys: the map (one entry per row), updated in place. copy(dst, src) copies physical row src's
// cache into physical row dst; clear(p) empties physical row p. old, fresh and used are scratch of
// phys.size() entries, so nothing is allocated.
template <class Copy, class Clear>
void reorder_rows(std::vector<int>& phys, std::span<const int> parents, std::vector<int>& old,
                  std::vector<int>& fresh, std::vector<char>& used, Copy&& copy, Clear&& clear) {
  const int rows = static_cast<int>(phys.size()), n = static_cast<int>(parents.size());
  if (n > rows) fail("decoder: reorder to {} rows, max batch {}", n, rows);
  for (int p : parents)
    if (p < 0 || p >= rows) fail("decoder: reorder parent {} is out of range", p);
  // The first child of a physical row takes it over; further children get a copy in a row that
  // no child uses.
  std::copy(phys.begin(), phys.end(), old.begin());
  std::fill(used.begin(), used.end(), 0);
  for (int i = 0; i < n; i++) {
    const int p = old[parents[i]];
    fresh[i] = used[p] ? -1 : p;
    used[p] = 1;
  }
  int next_free = 0;
  auto take_free = [&] {
    while (used[next_free]) next_free++;
    used[next_free] = 1;
    return next_free;
  };
  for (int i = 0; i < n; i++)
    if (fresh[i] < 0) {
      const int f = take_free();
      copy(f, old[parents[i]]);
      fresh[i] = f;
    }
  for (int i = n; i < rows; i++) {
    fresh[i] = take_free();
    clear(fresh[i]);
  }
  std::copy(fresh.begin(), fresh.end(), phys.begin());
}

}  // namespace gpt
