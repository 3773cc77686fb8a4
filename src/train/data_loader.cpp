#include "train/data_loader.h"

#include "core/error.h"
#include "core/rng.h"

namespace gpt {

DataLoader::DataLoader(const std::vector<std::string>& shard_paths, int B, int T, bool shuffle, uint64_t seed,
                       size_t vocab_size, const std::string& what, int rank, int ranks)
    : B_(B), T_(T), rank_(rank), ranks_(ranks), shuffle_(shuffle), seed_(seed) {
  if (shard_paths.empty()) fail("no {} shards", what);
  if (B < 1 || T < 1) fail("batch size and sequence length must be at least 1");
  if (ranks < 1 || rank < 0 || rank >= ranks) fail("rank {} of {} ranks does not exist", rank, ranks);
  const size_t need = shuffle ? static_cast<size_t>(T) + 1 : static_cast<size_t>(B) * ranks * T + 1;
  size_t largest = 0;
  for (const auto& p : shard_paths) {
    shards_.emplace_back(p);
    const auto& s = shards_.back();
    total_tokens_ += s.size();
    largest = std::max(largest, s.size());
    if (s.size() > 0 && s.max_token() >= vocab_size)
      fail("{}: token id {} is outside the model's vocabulary of {} (was the data prepared with another "
           "tokenizer?)",
           p, s.max_token(), vocab_size);
  }
  for (const auto& s : shards_) {
    windows_.push_back(s.size() > static_cast<size_t>(T) ? s.size() - T : 0);
    total_windows_ += windows_.back();
  }
  if (largest < need) {
    const std::string ranks_x = !shuffle && ranks > 1 ? fmt::format("{} ranks x ", ranks) : "";
    fail("the {} data is too small: a batch needs {} tokens in one shard ({}batch size {} x {}sequence length {} "
         "+ 1) but the largest {} shard has {}",
         what, need, shuffle ? "with --shuffle: " : "", shuffle ? 1 : B, ranks_x, T, what, largest);
  }
  reset();
}

void DataLoader::reset() {
  st_ = LoaderState{};
  st_.rng = Rng(seed_).state();
  // The cursor starts in the first shard that can hold a global batch.
  const size_t need = static_cast<size_t>(B_) * ranks_ * T_ + 1;
  while (!shuffle_ && shards_[st_.shard].size() < need) st_.shard++;
}

LoaderState DataLoader::state() const { return st_; }

void DataLoader::restore(const LoaderState& s) {
  if (s.shard >= shards_.size() || s.position > shards_[s.shard].size())
    fail("the saved data position (shard {}, token {}) does not exist in this data: it changed since the checkpoint",
         s.shard, s.position);
  st_ = s;
}

void DataLoader::window(size_t shard, size_t pos, size_t len, TokenId* in, int32_t* tgt) {
  const uint16_t* t = shards_[shard].tokens() + pos;
  for (size_t i = 0; i < len; i++) {
    in[i] = t[i];
    tgt[i] = t[i + 1];
  }
}

void DataLoader::next(TokenId* inputs, int32_t* targets) {
  const size_t BT = static_cast<size_t>(B_) * T_, global = BT * ranks_;
  if (!shuffle_) {
    // Move on while the current shard cannot supply the global batch's R*B*T+1 tokens at the cursor.
    while (st_.position + global + 1 > shards_[st_.shard].size()) {
      st_.shard = (st_.shard + 1) % shards_.size();
      st_.position = 0;
    }
    window(st_.shard, st_.position + rank_ * BT, BT, inputs, targets);
    st_.position += global;
  } else {
    Rng rng;
    rng.set_state(st_.rng);
    // Uniform over all windows: a shard is drawn in proportion to its number of windows. Every rank
    // draws the whole global batch and keeps its own rows.
    for (int b = 0; b < B_ * ranks_; b++) {
      uint64_t r = rng.below(total_windows_);
      size_t s = 0;
      while (r >= windows_[s]) r -= windows_[s++];
      const int row = b - rank_ * B_;
      if (row < 0 || row >= B_) continue;
      window(s, r, T_, inputs + static_cast<size_t>(row) * T_, targets + static_cast<size_t>(row) * T_);
    }
    st_.rng = rng.state();
  }
  st_.batches++;
}

}  // namespace gpt
