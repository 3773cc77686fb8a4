#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <queue>

#include <omp.h>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab_io.h"

namespace gpt {

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
std::atomic<uint64_t> g_next_instance{1};

// Per-thread memo of recently seen pre-tokens -> ids. Natural text repeats the same words
// over and over, so most pre-tokens skip the merge loop entirely. Cleared when full.
class PieceCache {
 public:
  static constexpr size_t kSlots = 1 << 14;  // 8-byte slots: 128 KB, stays in L2
  static constexpr size_t kMaxPiece = 64;

  const TokenId* find(const uint8_t* p, size_t n, uint64_t h, uint32_t* count) const {
    const uint64_t t = (h >> 32) | 1;
    for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      uint64_t s = slots_[i];
      if (s == 0) return nullptr;
      if ((s >> 32) != t) continue;
      const Entry& e = entries_[uint32_t(s)];
      if (e.key_len != n) continue;
      const auto* k = reinterpret_cast<const uint8_t*>(keys_.data()) + e.key_off;
      size_t j = 0;
      while (j < n && k[j] == p[j]) ++j;
      if (j == n) {
        *count = e.ids_len;
        return ids_.data() + e.ids_off;
      }
    }
  }
  void insert(const uint8_t* p, size_t n, uint64_t h, const TokenId* ids, size_t count) {
    if (entries_.size() * 2 >= kSlots) clear();
    size_t i = h & (kSlots - 1);
    while (slots_[i] != 0) i = (i + 1) & (kSlots - 1);
    slots_[i] = (((h >> 32) | 1) << 32) | entries_.size();
    entries_.push_back(Entry{static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(ids_.size()),
                             static_cast<uint16_t>(n), static_cast<uint16_t>(count)});
    keys_.append(reinterpret_cast<const char*>(p), n);
    ids_.insert(ids_.end(), ids, ids + count);
  }
  void clear() {
    std::fill(slots_.begin(), slots_.end(), 0);
    entries_.clear();
    keys_.clear();
    ids_.clear();
  }
  uint64_t owner = 0;

 private:
  struct Entry {
    uint32_t key_off, ids_off;
    uint16_t key_len, ids_len;
  };
  std::vector<uint64_t> slots_ = std::vector<uint64_t>(kSlots);
  std::vector<Entry> entries_;
  std::string keys_;
  std::vector<TokenId> ids_;
};

PieceCache& thread_cache(uint64_t owner) {
  thread_local PieceCache cache;
  if (cache.owner != owner) {
    cache.clear();
    cache.owner = owner;
  }
  return cache;
}

}  // namespace

BpeTokenizer::BpeTokenizer(std::vector<std::string> tokens,
                           std::vector<std::pair<std::string, std::string>> merges)
    : tokens_(std::move(tokens)), merges_(std::move(merges)), instance_(g_next_instance++) {
  present_.assign(tokens_.size(), 0);
  for (size_t id = 0; id < tokens_.size(); ++id) present_[id] = !tokens_[id].empty();
  TokenIndex all;  // every token's bytes -> id
  all.build(tokens_, [&](size_t id) { return present_[id] != 0; });
  for (size_t id = 0; id < tokens_.size(); ++id)
    if (present_[id] && all.find(tokens_[id].data(), tokens_[id].size()) != int64_t(id))
      fail("vocabulary has two ids for the token '{}'", bytes_to_vocab_text(tokens_[id]));

  // Single bytes are where every pre-token starts; all 256 must exist.
  std::vector<uint8_t> mergeable(tokens_.size(), 0);
  for (int b = 0; b < 256; ++b) {
    char c = static_cast<char>(b);
    int64_t id = all.find(&c, 1);
    if (id < 0) fail("vocabulary has no token for the byte 0x{:02X} (a byte-level BPE needs all 256)", b);
    byte_token_[b] = static_cast<TokenId>(id);
    mergeable[id] = 1;
  }

  // Rank of each merge result: its line in the merges file.
  std::vector<uint32_t> rank(tokens_.size(), kNoRank);
  for (size_t r = 0; r < merges_.size(); ++r) {
    const auto& [a, b] = merges_[r];
    std::string ab = a + b;
    int64_t ida = all.find(a.data(), a.size()), idb = all.find(b.data(), b.size());
    int64_t id = all.find(ab.data(), ab.size());
    if (ida < 0 || idb < 0 || id < 0)
      fail("merge {} ('{} {}') uses or makes a token that is not in the vocabulary", r + 1,
           bytes_to_vocab_text(a), bytes_to_vocab_text(b));
    if (rank[id] == kNoRank) rank[id] = static_cast<uint32_t>(r);
    mergeable[id] = 1;
  }

  // Tokens that no merge produces are special (e.g. <|endoftext|>): they never come out of BPE.
  for (size_t id = 0; id < tokens_.size(); ++id)
    if (present_[id] && !mergeable[id]) specials_.emplace_back(tokens_[id], static_cast<TokenId>(id));
  mergeable_.build(tokens_, [&](size_t id) { return present_[id] && mergeable[id]; });

  // Like tiktoken, two adjacent parts merge when their concatenated bytes are a ranked token,
  // whichever way that token was first built. So index every split of every merged token.
  pairs_.reserve(merges_.size() * 5 / 2);  // GPT-2: ~108k splits of its 50k merged tokens
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (rank[id] == kNoRank) continue;
    const std::string& t = tokens_[id];
    for (size_t k = 1; k < t.size(); ++k) {
      int64_t l = mergeable_.find(t.data(), k), r = mergeable_.find(t.data() + k, t.size() - k);
      if (l >= 0 && r >= 0) pairs_.insert(pair_key(TokenId(l), TokenId(r)), Merge{rank[id], TokenId(id)});
    }
  }
}

std::string_view BpeTokenizer::token_bytes(TokenId id) const {
  if (id >= tokens_.size() || !present_[id])
    fail("token id {} is not in the vocabulary (size {})", id, tokens_.size());
  return tokens_[id];
}

std::string BpeTokenizer::decode(std::span<const TokenId> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (TokenId id : ids) out += token_bytes(id);
  return out;
}

// O(n^2) in the piece length, but pre-tokens are short and this stays in L1.
void BpeTokenizer::merge_small(const uint8_t* p, size_t n, std::vector<TokenId>& out) const {
  TokenId ids[128];
  Merge pair[128];
  for (size_t i = 0; i < n; ++i) ids[i] = byte_token_[p[i]];
  auto lookup = [&](size_t i) {
    const Merge* m = pairs_.find(pair_key(ids[i], ids[i + 1]));
    return m ? *m : Merge{kNoRank, 0};
  };
  for (size_t i = 0; i + 1 < n; ++i) pair[i] = lookup(i);
  size_t m = n;
  while (m > 1) {
    size_t best = 0;
    uint32_t best_rank = pair[0].rank;
    for (size_t i = 1; i + 1 < m; ++i)
      if (pair[i].rank < best_rank) best_rank = pair[i].rank, best = i;
    if (best_rank == kNoRank) break;
    ids[best] = pair[best].id;
    for (size_t i = best + 1; i + 1 < m; ++i) ids[i] = ids[i + 1];
    for (size_t i = best; i + 2 < m; ++i) pair[i] = pair[i + 1];
    --m;
    if (best + 1 < m) pair[best] = lookup(best);
    if (best > 0) pair[best - 1] = lookup(best - 1);
  }
  out.insert(out.end(), ids, ids + m);
}

namespace {

// merge_long's candidate merges, by rank: a bucket queue. Bucket r holds the candidates of rank r
// in the order they were found, which is position order except after a rare out-of-order push
// (then the rest is sorted once, when the bucket is next read). A small heap holds the ranks that
// have candidates. Reused by each thread across calls; only the buckets a call touched are reset.
struct MergeQueue {
  using Candidate = int32_t;  // the position of the pair's left part; the bucket is its rank
  struct Bucket {
    std::vector<Candidate> items;
    size_t head = 0;      // items before it were taken
    bool sorted = true;   // items[head..] ascend by pos
    bool queued = false;  // its rank is in `ranks`
  };
  std::vector<Bucket> buckets;  // by rank
  std::priority_queue<uint32_t, std::vector<uint32_t>, std::greater<uint32_t>> ranks;
  std::vector<uint32_t> touched;
  uint64_t work = 0;  // candidates pushed, taken and sorted: linear in the piece length

  void push(uint32_t rank, Candidate c) {
    Bucket& b = buckets[rank];
    if (b.items.empty()) touched.push_back(rank);
    if (b.items.size() > b.head && c < b.items.back()) b.sorted = false;
    b.items.push_back(c);
    if (!b.queued) {
      b.queued = true;
      ranks.push(rank);
    }
    work++;
  }
  // The candidate with the lowest (rank, pos), or false when none is left.
  bool pop(uint32_t* rank, Candidate* c) {
    while (!ranks.empty()) {
      Bucket& b = buckets[ranks.top()];
      if (b.head == b.items.size()) {
        b.queued = false;
        b.items.clear();
        b.head = 0;
        b.sorted = true;
        ranks.pop();
        continue;
      }
      if (!b.sorted) {
        std::sort(b.items.begin() + static_cast<std::ptrdiff_t>(b.head), b.items.end());
        work += b.items.size() - b.head;
        b.sorted = true;
      }
      *rank = ranks.top();
      *c = b.items[b.head++];
      work++;
      return true;
    }
    return false;
  }
  void reset() {
    for (uint32_t r : touched) {
      Bucket& b = buckets[r];
      if (b.items.capacity() > (1u << 16))
        std::vector<Candidate>().swap(b.items);  // a huge piece's memory goes
      b.items.clear();
      b.head = 0;
      b.sorted = true;
      b.queued = false;
    }
    touched.clear();
    ranks = {};
  }
};

thread_local uint64_t t_merge_work = 0;

}  // namespace

uint64_t BpeTokenizer::last_merge_work() { return t_merge_work; }

// O(n log n): a linked list of parts and a min-heap of candidate merges ordered by (rank,
// position), so the pops happen in exactly the order merge_small would choose them. Pieces past
// kLongPiece bytes go to merge_long.
void BpeTokenizer::merge_large(const uint8_t* p, size_t n, std::vector<TokenId>& out) const {
  if (n > kLongPiece) {
    merge_long(p, n, out);
    return;
  }
  struct Part {
    TokenId id;
    int32_t prev, next;
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    TokenId left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Part> parts(n);
  for (size_t i = 0; i < n; ++i)
    parts[i] = Part{byte_token_[p[i]], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t i) {
    int32_t j = parts[i].next;
    if (j < 0) return;
    if (const Merge* m = pairs_.find(pair_key(parts[i].id, parts[j].id)))
      heap.push(Candidate{m->rank, i, parts[i].id, parts[j].id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    Part& left = parts[c.pos];
    // Stale if either side changed since the candidate was pushed: a part's bytes only grow
    // (so its id never returns to an old value), and its right neighbour only changes when the
    // part itself merges.
    if (left.id != c.left || left.next < 0 || parts[left.next].id != c.right) continue;
    int32_t gone = left.next;
    left.id = pairs_.find(pair_key(c.left, c.right))->id;
    left.next = parts[gone].next;
    if (left.next >= 0) parts[left.next].prev = c.pos;
    parts[gone].id = std::numeric_limits<TokenId>::max();  // dead
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = parts[i].next) out.push_back(parts[i].id);
}

// O(n), for pieces of any length: merge_large's linked list with the bucket queue above, which
// hands out candidate merges by (rank, position) as the heap does, so they happen in exactly the
// order merge_small chooses them. The heap over all n candidates spent most of its time in cache
// misses on long pieces (2.6 s for 10 MB of one letter, 35 s for 100 MB; now 0.5 s and 8 s);
// on short ones the heap, small enough for the cache, is the faster.
void BpeTokenizer::merge_long(const uint8_t* p, size_t n, std::vector<TokenId>& out) const {
  struct Part {
    TokenId id;
    int32_t prev, next;
  };
  thread_local MergeQueue queue;
  if (queue.buckets.size() < merges_.size()) queue.buckets.resize(merges_.size());
  queue.work = 0;
  std::vector<Part> parts(n);
  for (size_t i = 0; i < n; ++i)
    parts[i] = Part{byte_token_[p[i]], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  auto push = [&](int32_t i) {
    int32_t j = parts[i].next;
    if (j < 0) return;
    if (const Merge* m = pairs_.find(pair_key(parts[i].id, parts[j].id))) queue.push(m->rank, i);
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  constexpr TokenId kDead = std::numeric_limits<TokenId>::max();
  uint32_t rank;
  int32_t pos;
  while (queue.pop(&rank, &pos)) {
    Part& left = parts[pos];
    // Stale unless the pair at pos still merges at this rank. Parts only grow, so the same rank
    // (the same token's bytes, starting at pos) means the same two parts as when it was pushed:
    // had either grown, their bytes together would be longer than that token.
    if (left.id == kDead || left.next < 0) continue;
    const Merge* m = pairs_.find(pair_key(left.id, parts[left.next].id));
    if (!m || m->rank != rank) continue;
    int32_t gone = left.next;
    left.id = m->id;
    left.next = parts[gone].next;
    if (left.next >= 0) parts[left.next].prev = pos;
    parts[gone].id = kDead;
    if (left.prev >= 0) push(left.prev);
    push(pos);
  }
  t_merge_work = queue.work;
  queue.reset();
  for (int32_t i = 0; i >= 0; i = parts[i].next) out.push_back(parts[i].id);
}

void BpeTokenizer::encode_piece_uncached(std::string_view piece, std::vector<TokenId>& out) const {
  const auto* p = reinterpret_cast<const uint8_t*>(piece.data());
  if (piece.empty()) return;
  if (piece.size() <= 128) {
    merge_small(p, piece.size(), out);
  } else {
    // Parts are indexed with int32; a single pre-token (a run without spaces) beyond that is
    // not text anyone tokenizes.
    if (piece.size() >= size_t(INT32_MAX))
      fail("a single pre-token of {} bytes is too long to encode", piece.size());
    merge_large(p, piece.size(), out);
  }
}

void BpeTokenizer::encode_piece_linear(std::string_view piece, std::vector<TokenId>& out) const {
  if (piece.empty()) return;
  if (piece.size() >= size_t(INT32_MAX))
    fail("a single pre-token of {} bytes is too long to encode", piece.size());
  merge_long(reinterpret_cast<const uint8_t*>(piece.data()), piece.size(), out);
}

void BpeTokenizer::encode_piece(const uint8_t* p, size_t n, std::vector<TokenId>& out) const {
  if (n == 1) {
    out.push_back(byte_token_[p[0]]);
    return;
  }
  int64_t whole = mergeable_.find(p, n);
  if (whole >= 0) {
    out.push_back(static_cast<TokenId>(whole));
    return;
  }
  if (n > PieceCache::kMaxPiece) {
    encode_piece_uncached(std::string_view(reinterpret_cast<const char*>(p), n), out);
    return;
  }
  PieceCache& cache = thread_cache(instance_);
  uint64_t h = hash_bytes(p, n);
  uint32_t count;
  if (const TokenId* ids = cache.find(p, n, h, &count)) {
    out.insert(out.end(), ids, ids + count);
    return;
  }
  size_t start = out.size();
  merge_small(p, n, out);
  cache.insert(p, n, h, out.data() + start, out.size() - start);
}

void BpeTokenizer::encode_ordinary(std::string_view text, std::vector<TokenId>& out) const {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Most text is long stretches of ASCII: find where this one ends (a SIMD scan, dispatched
    // at run time) and split it with the ASCII-only scanner, which skips all UTF-8 decoding.
    const size_t ascii_end = i + ascii_prefix_length(s + i, n - i);
    while (i < ascii_end) {
      size_t e = next_piece_end<true>(s, ascii_end, i);
      // A piece that reaches the end of the stretch may go on past it: the general scanner decides.
      if (e == ascii_end && ascii_end < n) break;
      encode_piece(s + i, e - i, out);
      i = e;
    }
    if (i < n) {
      size_t e = next_piece_end(s, n, i);
      encode_piece(s + i, e - i, out);
      i = e;
    }
  }
}

std::vector<TokenId> BpeTokenizer::encode(std::string_view text, const AllowedSpecial& allowed,
                                          int threads) const {
  // 1. Cut the text at allowed special tokens (leftmost match; the longest if several start there).
  struct Segment {
    size_t begin, end;  // ordinary text, or...
    int64_t special;    // ...a special token id (>= 0)
  };
  std::vector<Segment> segments;
  std::vector<std::pair<std::string_view, TokenId>> active;
  for (const auto& [name, id] : specials_)
    if (allowed.allows(name)) active.emplace_back(name, id);
  size_t pos = 0;
  if (!active.empty()) {
    std::vector<size_t> next(active.size());
    for (size_t k = 0; k < active.size(); ++k) next[k] = text.find(active[k].first);
    for (;;) {
      size_t best = std::string_view::npos, best_k = 0;
      for (size_t k = 0; k < active.size(); ++k) {
        if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(active[k].first, pos);
        if (next[k] < best || (next[k] == best && next[k] != std::string_view::npos &&
                               active[k].first.size() > active[best_k].first.size()))
          best = next[k], best_k = k;
      }
      if (best == std::string_view::npos) break;
      if (best > pos) segments.push_back({pos, best, -1});
      segments.push_back({best, best, active[best_k].second});
      pos = best + active[best_k].first.size();
    }
  }
  if (pos < text.size()) segments.push_back({pos, text.size(), -1});

  // 2. Cut long ordinary segments into chunks at safe points, so threads can share the work.
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  threads = std::max(1, threads);
  const size_t chunk =
      threads > 1 ? std::max<size_t>(1 << 16, text.size() / (size_t(threads) * 16)) : ~size_t(0);
  std::vector<Segment> work;
  for (const Segment& seg : segments) {
    if (seg.special >= 0) {
      work.push_back(seg);
      continue;
    }
    size_t b = seg.begin;
    while (b < seg.end) {
      size_t e = seg.end;
      if (seg.end - b > chunk) e = std::min(seg.end, safe_split_point(s, seg.end, b + chunk));
      work.push_back({b, e, -1});
      b = e;
    }
  }

  // 3. Encode the chunks (in parallel when asked) and join them in order.
  std::vector<TokenId> out;
  if (threads == 1 || work.size() == 1) {
    out.reserve(text.size() / 3);
    for (const Segment& w : work) {
      if (w.special >= 0) {
        out.push_back(static_cast<TokenId>(w.special));
      } else {
        encode_ordinary(text.substr(w.begin, w.end - w.begin), out);
      }
    }
    return out;
  }
  std::vector<std::vector<TokenId>> parts(work.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (size_t i = 0; i < work.size(); ++i) {
    const Segment& w = work[i];
    if (w.special >= 0) {
      parts[i].push_back(static_cast<TokenId>(w.special));
    } else {
      parts[i].reserve((w.end - w.begin) / 3);
      encode_ordinary(text.substr(w.begin, w.end - w.begin), parts[i]);
    }
  }
  size_t total = 0;
  for (const auto& v : parts) total += v.size();
  out.reserve(total);
  for (const auto& v : parts) out.insert(out.end(), v.begin(), v.end());
  return out;
}

void BpeTokenizer::save(const std::string& dir) const { save_bpe_vocab(dir, tokens_, merges_); }

}  // namespace gpt
