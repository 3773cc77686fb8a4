// ZeRO stage 1 bookkeeping: which part of the flat parameter array each rank owns, and how those
// parts cut across the model's tensors. Pure arithmetic, no communication.
#pragma once
#include <cstddef>
#include <vector>

#include "model/params.h"

namespace gpt::dist {

struct Range {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};
// Splits [0, n) into `ranks` contiguous ranges whose sizes differ by at most one (the first n % ranks
// are one larger).
std::vector<Range> shard_ranges(size_t n, int ranks);
// The element counts of those ranges, as the collectives take them.
std::vector<size_t> shard_counts(size_t n, int ranks);

// A piece of one tensor that lies in a shard: AdamW updates it with or without weight decay.
struct Segment {
  size_t offset = 0, count = 0;  // in the flat parameter array
  bool decay = false;
};
// The tensors of `layout` cut to [r.begin, r.end), in order: shards cross tensor boundaries, so
// this is how an optimizer on a shard knows where weight decay applies.
std::vector<Segment> shard_segments(const std::vector<ParamInfo>& layout, Range r);

}  // namespace gpt::dist
