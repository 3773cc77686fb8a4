// Batches of training windows from llm.c token shards (data/shards.h).
//
// Sequential (the default, as llm.c): a cursor starts at token 0 of the first shard; each batch
// reads the B*T+1 tokens at the cursor (inputs: the first B*T as [B, T]; targets: the same window
// shifted by one) and advances the cursor by B*T. When fewer than B*T+1 tokens remain in the shard,
// the cursor moves to the start of the next shard (after the last, back to the first).
// Shuffled: each of the B rows is an independent window of T+1 tokens at a random position of a
// random shard (weighted by its length), drawn from a seeded generator whose state is part of the
// loader's state. Either way state() / restore() resume a run exactly where it stopped.
//
// Data parallel (rank r of R ranks, each with batch B): one global batch is R*B rows. Sequential:
// rank r reads the B*T+1 tokens at cursor + r*B*T and every rank moves the cursor by R*B*T (llm.c's
// rule), the shard ending when fewer than R*B*T+1 tokens remain. Shuffled: the one seeded stream
// draws all R*B windows and rank r keeps rows r*B .. r*B+B-1. So R ranks read exactly the rows one
// process with batch R*B reads, in the same order, and the state (cursor, generator) is the global
// one, the same on every rank: a checkpoint resumes with any rank count.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/shards.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

struct LoaderState {
  uint64_t shard = 0;     // sequential: the shard the cursor is in
  uint64_t position = 0;  // sequential: the cursor, in tokens
  uint64_t batches = 0;   // batches read so far
  std::array<uint64_t, 4> rng{};  // shuffled: the generator's state
};

class DataLoader {
 public:
  // Opens and validates every shard. Throws gpt::Error when there are none, when no shard holds one
  // global batch (R*B*T+1 tokens; T+1 when shuffled), or when a token is >= vocab_size.
  DataLoader(const std::vector<std::string>& shard_paths, int B, int T, bool shuffle, uint64_t seed,
             size_t vocab_size, const std::string& what = "train", int rank = 0, int ranks = 1);

  // Fills inputs[B*T] and targets[B*T] with this rank's rows of the next batch.
  void next(TokenId* inputs, int32_t* targets);

  LoaderState state() const;
  void restore(const LoaderState& s);
  void reset();  // back to the first batch

  size_t tokens() const { return total_tokens_; }
  size_t shards() const { return shards_.size(); }

 private:
  void window(size_t shard, size_t pos, size_t len, TokenId* in, int32_t* tgt);

  std::vector<data::TokenShard> shards_;
  int B_, T_;
  int rank_, ranks_;
  bool shuffle_;
  uint64_t seed_;
  size_t total_tokens_ = 0;
  std::vector<uint64_t> windows_;  // shuffled: windows of T+1 tokens per shard
  uint64_t total_windows_ = 0;
  LoaderState st_;
};

}  // namespace gpt
