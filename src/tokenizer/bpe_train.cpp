#include "tokenizer/bpe_train.h"

#include <algorithm>
#include <queue>
#include <unordered_map>

#include <omp.h>

#include "core/error.h"
#include "tokenizer/pretokenize.h"

namespace gpt {

namespace {

using PairKey = uint64_t;
PairKey key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }
uint32_t left_of(PairKey k) { return uint32_t(k >> 32); }
uint32_t right_of(PairKey k) { return uint32_t(k); }

// Looks up a std::string key by string_view without building a string (no allocation per hit).
struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Counts = std::unordered_map<std::string, uint64_t, ViewHash, std::equal_to<>>;

// Distinct pre-tokens and how often each occurs, counted in parallel over chunks.
Counts count_pretokens(const std::vector<std::string_view>& pieces, int threads) {
  std::vector<std::string_view> work;
  for (std::string_view t : pieces) {
    const auto* s = reinterpret_cast<const uint8_t*>(t.data());
    size_t b = 0;
    while (b < t.size()) {
      size_t e = std::min(t.size(), safe_split_point(s, t.size(), b + (1 << 20)));
      work.push_back(t.substr(b, e - b));
      b = e;
    }
  }
  std::vector<Counts> local(std::max(1, threads));
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, threads))
  for (size_t i = 0; i < work.size(); ++i) {
    Counts& counts = local[omp_get_thread_num()];
    std::string_view t = work[i];
    pretokenize(reinterpret_cast<const uint8_t*>(t.data()), t.size(), [&](size_t b, size_t e) {
      std::string_view piece = t.substr(b, e - b);
      auto it = counts.find(piece);
      if (it != counts.end()) {
        ++it->second;
      } else {
        counts.emplace(piece, 1);
      }
    });
  }
  for (size_t i = 1; i < local.size(); ++i)
    for (auto& [w, c] : local[i]) local[0][w] += c;
  return std::move(local[0]);
}

}  // namespace

BpeTrainResult train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt) {
  const size_t n_special = opt.special_tokens.size();
  if (opt.vocab_size < 256 + n_special)
    fail("--vocab-size {} is too small: a byte-level vocabulary needs 256 byte tokens{}", opt.vocab_size,
         n_special ? fmt::format(" plus {} special token{}", n_special, n_special == 1 ? "" : "s") : "");
  for (const auto& s : opt.special_tokens)
    if (s.empty()) fail("a special token cannot be empty");

  // 1. Cut the special tokens out of the text, then count distinct pre-tokens.
  std::vector<std::string_view> pieces;
  for (const std::string& t : texts) {
    std::string_view rest = t;
    for (;;) {
      size_t best = std::string_view::npos, len = 0;
      for (const auto& s : opt.special_tokens) {
        size_t p = rest.find(s);
        if (p < best || (p == best && p != std::string_view::npos && s.size() > len))
          best = p, len = s.size();
      }
      if (best == std::string_view::npos) break;
      pieces.push_back(rest.substr(0, best));
      rest.remove_prefix(best + len);
    }
    pieces.push_back(rest);
  }
  auto counts = count_pretokens(pieces, opt.threads);

  BpeTrainResult res;
  res.distinct_pretokens = counts.size();
  for (int b = 0; b < 256; ++b) res.tokens.push_back(std::string(1, static_cast<char>(b)));

  struct Word {
    std::vector<uint32_t> syms;
    uint64_t count;
  };
  std::vector<Word> words;
  words.reserve(counts.size());
  for (auto& [w, c] : counts) {
    if (w.size() < 2) continue;  // a single byte can never merge
    Word word{{}, c};
    for (unsigned char ch : w) word.syms.push_back(ch);
    words.push_back(std::move(word));
  }
  // Sorted so that the result does not depend on hash-map iteration order.
  std::sort(words.begin(), words.end(), [](const Word& a, const Word& b) { return a.syms < b.syms; });

  // 2. Initial pair counts, and for each pair the words it occurs in.
  std::unordered_map<PairKey, int64_t> pair_count;
  std::unordered_map<PairKey, std::vector<uint32_t>> where;
  for (uint32_t wi = 0; wi < words.size(); ++wi) {
    const auto& s = words[wi].syms;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      PairKey k = key(s[i], s[i + 1]);
      pair_count[k] += static_cast<int64_t>(words[wi].count);
      auto& v = where[k];
      if (v.empty() || v.back() != wi) v.push_back(wi);
    }
  }

  // Max-heap of (count, pair); entries go stale when counts change and are checked on pop.
  struct Entry {
    int64_t count;
    PairKey pair;
  };
  auto less = [&](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const std::string &xa = res.tokens[left_of(x.pair)], &ya = res.tokens[left_of(y.pair)];
    if (xa != ya) return xa > ya;  // earlier bytes win
    return res.tokens[right_of(x.pair)] > res.tokens[right_of(y.pair)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(less)> heap(less);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::unordered_map<std::string, uint32_t> token_id;
  for (uint32_t b = 0; b < 256; ++b) token_id[res.tokens[b]] = b;

  const size_t target = opt.vocab_size - n_special;
  const size_t wanted = target - 256;
  std::vector<uint32_t> merged_syms;
  while (res.tokens.size() < target && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    if (it == pair_count.end() || it->second != top.count) continue;  // stale
    if (top.count < static_cast<int64_t>(opt.min_frequency) || top.count <= 0) break;

    const uint32_t a = left_of(top.pair), b = right_of(top.pair);
    std::string bytes = res.tokens[a] + res.tokens[b];
    uint32_t id;
    if (auto found = token_id.find(bytes); found != token_id.end()) {
      id = found->second;  // the same bytes were already built another way
    } else {
      id = static_cast<uint32_t>(res.tokens.size());
      res.tokens.push_back(bytes);
      token_id.emplace(bytes, id);
    }
    res.merges.emplace_back(res.tokens[a], res.tokens[b]);

    // 3. Rewrite only the words that contain the pair, updating the counts of their pairs.
    std::vector<uint32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    std::unordered_map<PairKey, int64_t> delta;
    for (uint32_t wi : affected) {
      Word& w = words[wi];
      auto& s = w.syms;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size(); ++i)
        if (s[i] == a && s[i + 1] == b) {
          has = true;
          break;
        }
      if (!has) continue;
      const auto c = static_cast<int64_t>(w.count);
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[key(s[i], s[i + 1])] -= c;
      merged_syms.clear();
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged_syms.push_back(id);
          i += 2;
        } else {
          merged_syms.push_back(s[i++]);
        }
      }
      s.swap(merged_syms);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        PairKey k = key(s[i], s[i + 1]);
        delta[k] += c;
        if (left_of(k) == id || right_of(k) == id) {
          auto& v = where[k];
          if (v.empty() || v.back() != wi) v.push_back(wi);
        }
      }
    }
    for (const auto& [k, d] : delta) {
      if (d == 0) continue;
      int64_t& c = pair_count[k];
      c += d;
      if (c <= 0) {
        pair_count.erase(k);
      } else {
        heap.push({c, k});
      }
    }
    if (opt.progress && (res.merges.size() % 256 == 0)) opt.progress(res.tokens.size() - 256, wanted);
  }
  for (const auto& s : opt.special_tokens) {
    if (token_id.count(s)) fail("special token '{}' is also an ordinary token of the trained vocabulary", s);
    token_id.emplace(s, static_cast<uint32_t>(res.tokens.size()));
    res.tokens.push_back(s);
  }
  if (opt.progress) opt.progress(res.tokens.size() - 256 - n_special, wanted);
  return res;
}

}  // namespace gpt
