// Row bookkeeping shared by the CPU decoder and the device decoder over a map from logical rows
// (what callers see) to physical cache rows: the checks of a prefill and a step, the sliding of full
// rows, and beam reordering (rows move by relabelling, and a cache is copied only where a parent has
// more than one child). Each decoder keeps its own compute.
#pragma once
#include <algorithm>
#include <span>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// A prefill of logical row `row`, checked (row in range, at least one token, every id in the
// vocabulary), with its tokens cut to the last n_ctx.
inline std::span<const TokenId> prefill_window(int row, std::span<const TokenId> tokens, int max_batch,
                                               int n_ctx, int vocab) {
  if (row < 0 || row >= max_batch) fail("decoder: row {} is out of range (max batch {})", row, max_batch);
  if (tokens.empty()) fail("decoder: a prefill needs at least one token");
  if (tokens.size() > static_cast<size_t>(n_ctx)) tokens = tokens.subspan(tokens.size() - n_ctx);
  for (TokenId t : tokens)
    if (t >= static_cast<TokenId>(vocab))
      fail("token id {} is out of range for a vocabulary of {}", t, vocab);
  return tokens;
}

// Checks a step: one token per row, at most max_batch distinct rows, each in range and prefilled
// (len by physical row), every id in the vocabulary. used: scratch of max_batch entries.
inline void check_step(std::span<const int> rows, std::span<const TokenId> tokens, int max_batch, int vocab,
                       const std::vector<int>& phys, const std::vector<int>& len, std::vector<char>& used) {
  const int n = static_cast<int>(rows.size());
  if (tokens.size() != rows.size()) fail("decoder: step() needs one token per row");
  if (n == 0) return;
  if (n > max_batch) fail("decoder: {} rows in a step, max batch {}", n, max_batch);
  std::fill(used.begin(), used.end(), 0);
  for (int i = 0; i < n; i++) {
    const int r = rows[i];
    if (r < 0 || r >= max_batch) fail("decoder: row {} is out of range (max batch {})", r, max_batch);
    if (len[phys[r]] == 0) fail("decoder: row {} has not been prefilled", r);
    if (tokens[i] >= static_cast<TokenId>(vocab))
      fail("token id {} is out of range for a vocabulary of {}", tokens[i], vocab);
    if (used[r]) fail("decoder: row {} appears twice in one step", r);
    used[r] = 1;
  }
}

// Before a step, full rows slide (the context-full policy of docs/kv-cache.md): each stepped row
// whose physical row p holds n_ctx tokens is rebuilt by rebuild(p, window) from its last n_ctx - 1
// tokens (tokens: [rows][n_ctx] by physical row; the window is p's own, so rebuild must allow the
// overlap). Returns how many rows were rebuilt.
template <class Rebuild>
size_t slide_full_rows(std::span<const int> rows, const std::vector<int>& phys, const std::vector<int>& len,
                       const std::vector<TokenId>& tokens, int n_ctx, Rebuild&& rebuild) {
  size_t rebuilt = 0;
  for (int r : rows) {
    const int p = phys[r];
    if (len[p] == n_ctx) {
      const TokenId* w = tokens.data() + static_cast<size_t>(p) * n_ctx;
      rebuild(p, std::span<const TokenId>(w + 1, n_ctx - 1));
      rebuilt++;
    }
  }
  return rebuilt;
}

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
