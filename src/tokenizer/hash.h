// Small open-addressing hash tables for the tokenizer's hot lookups (pair -> merge, bytes -> id).
// Built once when a vocabulary loads, then read-only: no allocation while encoding.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace gpt {

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x;
}

inline uint64_t hash_bytes(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ mix64(w)) * 0x9FB21C651E98DF25ull;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ mix64(w ^ (uint64_t(n) << 59))) * 0x9FB21C651E98DF25ull;
  }
  return mix64(h);
}

// uint64 key -> Value, linear probing. Key and value share a slot, so a lookup touches one
// cache line. Key ~0 is reserved as "empty".
template <typename Value>
class U64Map {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, Value{}});
    mask_ = cap - 1;
    size_ = 0;
  }
  // Inserts if absent; returns false (keeping the old value) if present.
  bool insert(uint64_t key, const Value& v) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t i = mix64(key) & mask_;
    while (slots_[i].key != kEmpty) {
      if (slots_[i].key == key) return false;
      i = (i + 1) & mask_;
    }
    slots_[i] = Slot{key, v};
    ++size_;
    return true;
  }
  const Value* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key;
    Value value;
  };
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    reserve(old.empty() ? 8 : old.size());
    for (const Slot& s : old)
      if (s.key != kEmpty) insert(s.key, s.value);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

// Token bytes -> id for a fixed set of tokens. Compact on purpose: the slots are 8 bytes (a
// 32-bit hash tag and the id) and the token bytes sit in one contiguous pool, so the index of
// GPT-2's 50k tokens is about 1.5 MB and mostly hits L2; this lookup runs once per pre-token.
class TokenIndex {
 public:
  // Indexes tokens[id] for every id with include[id] != 0 (non-empty, distinct strings).
  template <typename Include>
  void build(const std::vector<std::string>& tokens, Include&& include) {
    pool_.clear();
    off_.assign(tokens.size() + 1, 0);
    size_t count = 0;
    for (size_t id = 0; id < tokens.size(); ++id) {
      off_[id] = static_cast<uint32_t>(pool_.size());
      if (include(id)) {
        pool_ += tokens[id];
        ++count;
      }
    }
    off_[tokens.size()] = static_cast<uint32_t>(pool_.size());
    size_t cap = 16;
    while (cap < count * 2) cap <<= 1;
    slots_.assign(cap, 0);
    mask_ = cap - 1;
    for (size_t id = 0; id < tokens.size(); ++id) {
      if (off_[id + 1] == off_[id]) continue;
      uint64_t h = hash_bytes(tokens[id].data(), tokens[id].size());
      size_t i = h & mask_;
      while (slots_[i] != 0) i = (i + 1) & mask_;
      slots_[i] = (tag(h) << 32) | id;
    }
  }
  // The id of these bytes, or -1.
  int64_t find(const void* data, size_t n) const {
    if (slots_.empty()) return -1;
    const auto* p = static_cast<const uint8_t*>(data);
    uint64_t h = hash_bytes(p, n);
    const uint64_t t = tag(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      uint64_t s = slots_[i];
      if (s == 0) return -1;
      if ((s >> 32) != t) continue;
      uint32_t id = static_cast<uint32_t>(s);
      if (off_[id + 1] - off_[id] != n) continue;
      const auto* k = reinterpret_cast<const uint8_t*>(pool_.data()) + off_[id];
      size_t j = 0;
      while (j < n && k[j] == p[j]) ++j;
      if (j == n) return id;
    }
  }

 private:
  static uint64_t tag(uint64_t h) { return (h >> 32) | 1; }  // never 0, so 0 marks an empty slot
  std::string pool_;
  std::vector<uint32_t> off_;
  std::vector<uint64_t> slots_;
  size_t mask_ = 0;
};

}  // namespace gpt
