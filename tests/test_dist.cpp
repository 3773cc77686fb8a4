// Data parallelism without MPI: the shard arithmetic, the weight-decay walk over shards, AdamW on
// shards against AdamW on the whole model, the loader's rank slicing, checkpoints read into a
// shard, and the one-process communicator. The MPI path itself runs in test_cli_mpi.sh.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "data/shards.h"
#include "dist/communicator.h"
#include "dist/shard.h"
#include "model/gpt.h"
#include "test_util.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"

namespace gpt {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.n_ctx = 8;
  c.vocab_size = 37;
  c.dropout = 0.0f;
  return c;
}

TEST(Shard, RangesAreContiguousBalancedAndCoverEverything) {
  for (size_t n : {0u, 1u, 5u, 7u, 64u, 1001u})
    for (int R : {1, 2, 3, 4, 8}) {
      const auto rs = dist::shard_ranges(n, R);
      const auto cs = dist::shard_counts(n, R);
      ASSERT_EQ(rs.size(), static_cast<size_t>(R));
      ASSERT_EQ(cs.size(), static_cast<size_t>(R));
      size_t at = 0, lo = n, hi = 0;
      for (int r = 0; r < R; r++) {
        EXPECT_EQ(rs[r].begin, at) << n << " " << R;
        EXPECT_EQ(cs[r], rs[r].size());
        at = rs[r].end;
        lo = std::min(lo, rs[r].size());
        hi = std::max(hi, rs[r].size());
        // The first n % R shards hold the extra element.
        EXPECT_EQ(rs[r].size(), n / R + (static_cast<size_t>(r) < n % R ? 1 : 0));
      }
      EXPECT_EQ(at, n);
      EXPECT_LE(hi - lo, 1u);
    }
  EXPECT_EQ(dist::shard_ranges(10, 1)[0].end, 10u);
  EXPECT_THROW(dist::shard_ranges(10, 0), Error);
}

TEST(Shard, SegmentsCutTheLayoutAndKeepEachElementsDecay) {
  const auto layout = parameter_layout(small_config());
  const size_t n = layout.back().offset + layout.back().numel;
  // Per element, from the layout directly: which tensor holds it and whether it decays.
  std::vector<int> decay(n, -1);
  for (const auto& p : layout)
    for (size_t i = p.offset; i < p.offset + p.numel; i++) decay[i] = p.decay;
  for (int R : {1, 2, 3, 5, 7}) {
    std::vector<int> seen(n, -1);
    for (const auto& r : dist::shard_ranges(n, R)) {
      size_t at = r.begin;
      for (const auto& s : dist::shard_segments(layout, r)) {
        EXPECT_EQ(s.offset, at);  // contiguous, in order, inside the shard
        EXPECT_GT(s.count, 0u);
        for (size_t i = s.offset; i < s.offset + s.count; i++) seen[i] = s.decay;
        at += s.count;
      }
      EXPECT_EQ(at, r.end);
    }
    EXPECT_EQ(seen, decay) << R;
  }
  // One shard: the segments are the tensors themselves.
  const auto whole = dist::shard_segments(layout, {0, n});
  ASSERT_EQ(whole.size(), layout.size());
  for (size_t i = 0; i < whole.size(); i++) {
    EXPECT_EQ(whole[i].offset, layout[i].offset);
    EXPECT_EQ(whole[i].count, layout[i].numel);
  }
  // A shard inside one tensor, and one crossing a boundary.
  const auto& t = layout[2];
  auto inner = dist::shard_segments(layout, {t.offset + 1, t.offset + 3});
  ASSERT_EQ(inner.size(), 1u);
  EXPECT_EQ(inner[0].count, 2u);
  auto across = dist::shard_segments(layout, {t.offset - 2, t.offset + 2});
  ASSERT_EQ(across.size(), 2u);
  EXPECT_EQ(across[0].decay, layout[1].decay);
  EXPECT_EQ(across[1].decay, t.decay);
}

void random_grads(GPT& m, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.1f);
  for (size_t i = 0; i < m.num_parameters(); i++) m.grads()[i] = d(rng);
}

TEST(Shard, AdamWOnShardsEqualsAdamWOnTheWholeModelBitForBit) {
  const ModelConfig cfg = small_config();
  const AdamWConfig ac{.lr = 1e-2f, .weight_decay = 0.1f};
  for (int R : {2, 3, 7}) {
    GPT whole(cfg), parts(cfg);
    whole.init_gpt2(3);
    parts.init_gpt2(3);
    AdamW opt(whole, ac);
    std::vector<AdamW> shards;
    for (const auto& r : dist::shard_ranges(parts.num_parameters(), R)) shards.emplace_back(parts, ac, r);
    for (int step = 1; step <= 3; step++) {
      random_grads(whole, step);
      random_grads(parts, step);
      opt.step(1e-2f);
      for (auto& s : shards) s.step(1e-2f);  // each updates only its own range
    }
    for (size_t i = 0; i < whole.num_parameters(); i++)
      ASSERT_EQ(whole.params()[i], parts.params()[i]) << R << " " << i;
    for (const auto& s : shards)
      for (size_t i = 0; i < s.size(); i++) {
        ASSERT_EQ(s.m()[i], opt.m()[s.shard().begin + i]);
        ASSERT_EQ(s.v()[i], opt.v()[s.shard().begin + i]);
      }
  }
}

TEST(Shard, AdamWDecaysOnlyWhereTheLayoutSays) {
  // Zero gradients and moments: an update is w -= lr * wd * w exactly where decay applies.
  const ModelConfig cfg = small_config();
  GPT m(cfg);
  m.init_gpt2(5);
  for (size_t i = 0; i < m.num_parameters(); i++) m.params()[i] = 1.0f;
  m.zero_grad();
  for (const auto& r : dist::shard_ranges(m.num_parameters(), 3)) {
    AdamW s(m, {.lr = 0.5f, .weight_decay = 0.1f}, r);
    s.step(0.5f);
  }
  for (const auto& p : m.layout())
    for (size_t i = p.offset; i < p.offset + p.numel; i++)
      ASSERT_EQ(m.params()[i], p.decay ? 1.0f - 0.5f * 0.1f : 1.0f) << p.name;
}

TEST(Shard, ACheckpointLoadsIntoAShardedOptimizer) {
  const std::string dir = test::temp_dir("dist_ckpt");
  std::filesystem::remove_all(dir + "/out");
  GPT m(small_config());
  m.init_gpt2(1);
  AdamW whole(m, {});
  for (size_t i = 0; i < whole.size(); i++) {
    whole.m()[i] = static_cast<float>(i) * 0.5f;
    whole.v()[i] = static_cast<float>(i) * 0.25f;
  }
  whole.set_steps(9);
  save_checkpoint(dir + "/out", 9, m, nullptr, whole, test::trainer_state_at(9));
  const auto ck = find_checkpoint(dir + "/out");
  ASSERT_TRUE(ck);
  for (const auto& r : dist::shard_ranges(m.num_parameters(), 3)) {
    AdamW s(m, {}, r);
    load_optimizer_state(ck->dir, s);
    EXPECT_EQ(s.steps(), 9);
    for (size_t i = 0; i < s.size(); i++) {
      ASSERT_EQ(s.m()[i], static_cast<float>(r.begin + i) * 0.5f);
      ASSERT_EQ(s.v()[i], static_cast<float>(r.begin + i) * 0.25f);
    }
    // Its moments alone are not a checkpoint.
    EXPECT_THROW(save_checkpoint(dir + "/out", 10, m, nullptr, s, test::trainer_state_at(10)), Error);
  }
  std::filesystem::remove_all(dir);
}

// Shard s holds the values (s * 31 + i) mod 97.
std::string make_shards(const std::string& name, const std::vector<size_t>& sizes) {
  const std::string dir = test::temp_dir(name);
  for (size_t s = 0; s < sizes.size(); s++) {
    std::vector<uint16_t> t(sizes[s]);
    for (size_t i = 0; i < t.size(); i++) t[i] = static_cast<uint16_t>((s * 31 + i) % 97);
    data::write_shard(fmt::format("{}/train_{:06d}.bin", dir, s), t.data(), t.size());
  }
  return dir;
}

TEST(DataLoaderRanks, RanksReadTheRowsOfOneProcessWithTheGlobalBatch) {
  const std::string dir = make_shards("dist_loader", {230, 40, 130});
  const auto paths = data::find_shards(dir, "train");
  const int B = 2, T = 5;
  for (bool shuffle : {false, true})
    for (int R : {2, 3}) {
      DataLoader one(paths, B * R, T, shuffle, 11, 97);
      std::vector<DataLoader> ranks;
      for (int r = 0; r < R; r++) ranks.emplace_back(paths, B, T, shuffle, 11, 97, "train", r, R);
      std::vector<TokenId> in(static_cast<size_t>(B * R * T)), part(static_cast<size_t>(B * T));
      std::vector<int32_t> tg(in.size()), ptg(part.size());
      for (int k = 0; k < 40; k++) {  // several passes over the shards
        one.next(in.data(), tg.data());
        for (int r = 0; r < R; r++) {
          ranks[r].next(part.data(), ptg.data());
          for (int i = 0; i < B * T; i++) {
            ASSERT_EQ(part[i], in[r * B * T + i]) << shuffle << " R=" << R << " batch " << k << " rank " << r;
            ASSERT_EQ(ptg[i], tg[r * B * T + i]);
          }
          // The state is the global one: the same on every rank and in the one process.
          EXPECT_EQ(ranks[r].state().position, one.state().position);
          EXPECT_EQ(ranks[r].state().shard, one.state().shard);
          EXPECT_EQ(ranks[r].state().rng, one.state().rng);
        }
      }
    }
}

TEST(DataLoaderRanks, SequentialFollowsLlmcsRule) {
  // B*T = 5, 2 ranks: a global batch takes 11 tokens; rank 1 reads at cursor + 5. Shard 0 (25 tokens)
  // gives cursors 0 and 10 (20 + 11 > 25); shard 1 (8) is too small; shard 2 (12) gives 0.
  const std::string dir = make_shards("dist_llmc", {25, 8, 12});
  DataLoader r1(data::find_shards(dir, "train"), 1, 5, false, 1, 97, "train", 1, 2);
  std::vector<TokenId> in(5);
  std::vector<int32_t> tg(5);
  for (auto [shard, pos] : std::vector<std::pair<size_t, size_t>>{{0, 5}, {0, 15}, {2, 5}, {0, 5}}) {
    r1.next(in.data(), tg.data());
    for (size_t i = 0; i < 5; i++) {
      EXPECT_EQ(in[i], (shard * 31 + pos + i) % 97) << shard << " " << pos;
      EXPECT_EQ(static_cast<TokenId>(tg[i]), (shard * 31 + pos + i + 1) % 97);
    }
  }
  // The whole global batch must fit in a shard: 3 ranks x 5 + 1 = 16 > 12 but 25 holds it.
  EXPECT_NO_THROW(DataLoader(data::find_shards(dir, "train"), 1, 5, false, 1, 97, "train", 0, 3));
  EXPECT_THROW(DataLoader(data::find_shards(dir, "train"), 1, 5, false, 1, 97, "train", 0, 5), Error);
  EXPECT_THROW(DataLoader(data::find_shards(dir, "train"), 1, 5, false, 1, 97, "train", 2, 2), Error);
}

TEST(Communicator, OneProcessIsTheIdentity) {
  dist::Communicator& c = dist::single_process();
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  std::vector<double> d = {1e300, -0.5};
  const auto f0 = f;
  const auto d0 = d;
  c.allreduce_sum(f.data(), f.size());
  c.allreduce_sum(d.data(), d.size());
  const std::vector<size_t> counts = {f.size()};
  c.reduce_scatter_sum(f.data(), counts, dist::DType::F32);
  c.allgather(f.data(), counts, dist::DType::F32);
  c.broadcast(d.data(), d.size(), dist::DType::F64, 0);
  c.barrier();
  EXPECT_EQ(f, f0);
  EXPECT_EQ(d, d0);
  std::vector<float> g(3, 0.0f);
  c.gather_to_root(f.data(), g.data(), counts, dist::DType::F32);
  EXPECT_EQ(g, f0);
  // Without a launcher in the environment, the world is this one process.
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE") && !std::getenv("PMIX_RANK")) {
    EXPECT_EQ(dist::world().size(), 1);
    EXPECT_EQ(dist::world().describe(), "single process");
  }
}

}  // namespace
}  // namespace gpt
