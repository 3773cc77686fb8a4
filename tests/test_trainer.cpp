// The training loop's pieces: the learning-rate schedule, the data loader (llm.c's sequential
// rule and seeded shuffling), gradient clipping, gradient accumulation, and whole runs (resume,
// checkpoints, metrics). The kill -9 and bad-input cases run end to end in test_cli_train.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/rng.h"
#include "data/shards.h"
#include "io/model_dir.h"
#include "model/gpt.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/lr_schedule.h"
#include "train/trainer.h"
#include "backend/backend.h"
#include "train/step.h"
#include "train/adamw.h"

namespace gpt {
namespace {

TEST(LrSchedule, WarmupThenCosineLinearConstant) {
  LrSchedule s{1e-3f, 1e-4f, 10, 110, ScheduleKind::Cosine};
  EXPECT_FLOAT_EQ(s.at(1), 1e-4f);   // (0+1)/10 of the peak
  EXPECT_FLOAT_EQ(s.at(10), 1e-3f);  // end of warmup
  EXPECT_FLOAT_EQ(s.at(11), 1e-3f);  // r = 0
  EXPECT_NEAR(s.at(61), 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.5)), 1e-9);
  EXPECT_NEAR(s.at(110), 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 99.0 / 100.0)), 1e-9);
  for (int i = 11; i < 110; i++) EXPECT_LE(s.at(i + 1), s.at(i));  // monotone decay
  s.kind = ScheduleKind::Linear;
  EXPECT_NEAR(s.at(61), 1e-3 - 0.9e-3 * 0.5, 1e-9);
  s.kind = ScheduleKind::Constant;
  EXPECT_FLOAT_EQ(s.at(100), 1e-3f);
  EXPECT_FLOAT_EQ(s.at(5), 5e-4f);  // warmup applies to every kind
  EXPECT_EQ(parse_schedule("linear"), ScheduleKind::Linear);
  EXPECT_THROW(parse_schedule("exp"), Error);
}

// A data directory of shards with known contents: shard s holds the values base_s + i (mod 97).
std::string make_shards(const std::string& name, const std::vector<size_t>& sizes, const std::string& split = "train") {
  const std::string dir = test::temp_dir(name);
  for (size_t s = 0; s < sizes.size(); s++) {
    std::vector<uint16_t> t(sizes[s]);
    for (size_t i = 0; i < t.size(); i++) t[i] = static_cast<uint16_t>((s * 31 + i) % 97);
    data::write_shard(fmt::format("{}/{}_{:06d}.bin", dir, split, s), t.data(), t.size());
  }
  return dir;
}

TEST(DataLoader, SequentialReadsBTPlusOneAdvancesBTAndMovesOnAtShardEnds) {
  // B*T = 10: shard 0 (35 tokens) gives windows at 0, 10, 20 (20+11 <= 35; 30+11 > 35);
  // shard 1 (8 tokens) can never hold a batch and is skipped; shard 2 (21 tokens) gives 0, 10.
  const std::string dir = make_shards("loader_seq", {35, 8, 21});
  DataLoader dl(data::find_shards(dir, "train"), 2, 5, false, 1, 97);
  std::vector<TokenId> in(10);
  std::vector<int32_t> tg(10);
  const std::vector<std::pair<size_t, size_t>> expect = {{0, 0}, {0, 10}, {0, 20}, {2, 0}, {2, 10}, {0, 0}};
  for (auto [shard, pos] : expect) {
    dl.next(in.data(), tg.data());
    for (size_t i = 0; i < 10; i++) {
      EXPECT_EQ(in[i], (shard * 31 + pos + i) % 97) << shard << " " << pos;
      EXPECT_EQ(static_cast<TokenId>(tg[i]), (shard * 31 + pos + i + 1) % 97);
    }
  }
}

TEST(DataLoader, StateRestoresTheStreamExactlyBothModes) {
  const std::string dir = make_shards("loader_state", {200, 130});
  for (bool shuffle : {false, true}) {
    DataLoader a(data::find_shards(dir, "train"), 3, 7, shuffle, 42, 97);
    std::vector<TokenId> in(21), in2(21);
    std::vector<int32_t> tg(21), tg2(21);
    for (int i = 0; i < 9; i++) a.next(in.data(), tg.data());
    LoaderState st = a.state();
    DataLoader b(data::find_shards(dir, "train"), 3, 7, shuffle, 42, 97);
    b.restore(st);
    for (int i = 0; i < 20; i++) {
      a.next(in.data(), tg.data());
      b.next(in2.data(), tg2.data());
      ASSERT_EQ(in, in2);
      ASSERT_EQ(tg, tg2);
      // Targets are the inputs shifted by one within each row's window.
      for (int r = 0; r < 3; r++)
        for (int t = 0; t + 1 < 7; t++) EXPECT_EQ(static_cast<int32_t>(in[r * 7 + t + 1]), tg[r * 7 + t]);
    }
  }
}

TEST(DataLoader, ShuffledWindowsAreSeededAndCoverTheData) {
  const std::string dir = make_shards("loader_shuffle", {300});
  DataLoader a(data::find_shards(dir, "train"), 4, 8, true, 7, 97), b(data::find_shards(dir, "train"), 4, 8, true, 7, 97),
      c(data::find_shards(dir, "train"), 4, 8, true, 8, 97);
  std::vector<TokenId> x(32), y(32), z(32);
  std::vector<int32_t> t(32);
  std::set<TokenId> firsts;
  bool differs = false;
  for (int i = 0; i < 200; i++) {
    a.next(x.data(), t.data());
    b.next(y.data(), t.data());
    c.next(z.data(), t.data());
    EXPECT_EQ(x, y);
    differs |= x != z;
    for (int r = 0; r < 4; r++) firsts.insert(x[r * 8]);
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(firsts.size(), 97u);  // windows start everywhere
}

TEST(DataLoader, RejectsTooLittleDataAndIdsOutsideTheVocabulary) {
  const std::string dir = make_shards("loader_bad", {20});
  EXPECT_THROW(DataLoader(data::find_shards(dir, "train"), 4, 5, false, 1, 97), Error);  // needs 21
  EXPECT_NO_THROW(DataLoader(data::find_shards(dir, "train"), 4, 5, true, 1, 97));    // shuffled: 6 suffice
  EXPECT_THROW(DataLoader(data::find_shards(dir, "train"), 1, 5, false, 1, 10), Error);  // ids up to 19
  EXPECT_THROW(DataLoader({}, 1, 5, false, 1, 97), Error);
}

// The step's norm and clipping (AdamW over a group, as TrainStep runs them) against a direct
// computation in double; clipping inside the update equals scaling the gradients first, bit for bit.
TEST(GradClip, NormAndClipMatchADirectComputation) {
  std::vector<float> g(1001), p(g.size(), 0.5f);
  Rng rng(3);
  double sum = 0;
  for (auto& x : g) {
    x = static_cast<float>(rng.uniform() - 0.5);
    sum += static_cast<double>(x) * x;
  }
  AdamW opt(cpu_backend(), {});
  opt.add_group({"g", p.data(), g.data(), g.size(), {}});
  const double norm = std::sqrt(opt.grad_sum_squares());
  EXPECT_NEAR(norm, std::sqrt(sum), 1e-9);
  EXPECT_EQ(clip_factor(norm, static_cast<float>(norm * 2)), 1.0f);
  const float c = clip_factor(norm, 1.0f);
  EXPECT_NEAR(c, 1.0 / (norm + 1e-6), 1e-7);
  EXPECT_EQ(clip_factor(norm, 0.0f), 1.0f);  // 0: off
  // The same update from gradients scaled beforehand (whose norm is then 1).
  std::vector<float> h = g, q(p.size(), 0.5f);
  for (auto& x : h) x *= c;
  AdamW ref(cpu_backend(), {});
  ref.add_group({"h", q.data(), h.data(), h.size(), {}});
  EXPECT_NEAR(std::sqrt(ref.grad_sum_squares()), 1.0, 1e-5);
  for (int step = 0; step < 2; step++) {
    opt.step(1e-3f, c);
    ref.step(1e-3f);
  }
  for (size_t i = 0; i < p.size(); i++) ASSERT_EQ(p[i], q[i]) << i;
  EXPECT_NE(p[0], 0.5f);
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.n_ctx = 16;
  c.vocab_size = 97;
  c.dropout = 0.0f;
  return c;
}

std::vector<nlohmann::json> read_metrics(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(read_file(out + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

TrainConfig tiny_run(const std::string& data, const std::string& out) {
  TrainConfig c;
  c.data_dir = data;
  c.out_dir = out;
  c.model = tiny_config();
  c.steps = 12;
  c.batch_size = 4;
  c.seq_len = 16;
  c.schedule.lr = 3e-3f;
  c.schedule.min_lr = 3e-4f;
  c.schedule.warmup = 3;
  c.eval_batches = 2;
  c.quiet = true;
  return c;
}

TEST(Trainer, GradientAccumulationEqualsOneBatchKTimesLarger) {
  const std::string data = make_shards("accum", {2000});
  std::filesystem::remove_all(data + "/out1");
  std::filesystem::remove_all(data + "/out2");
  TrainConfig one = tiny_run(data, data + "/out1");
  TrainConfig acc = tiny_run(data, data + "/out2");
  acc.batch_size = 2;
  acc.grad_accum = 2;
  train(one);
  train(acc);
  auto m1 = read_metrics(one.out_dir), m2 = read_metrics(acc.out_dir);
  ASSERT_EQ(m1.size(), m2.size());
  for (size_t i = 0; i < m1.size(); i++) {
    if (!m1[i].contains("loss")) continue;
    EXPECT_NEAR(m1[i]["loss"].get<double>(), m2[i]["loss"].get<double>(), 2e-5 * m1[i]["loss"].get<double>());
    EXPECT_NEAR(m1[i]["grad_norm"].get<double>(), m2[i]["grad_norm"].get<double>(),
                1e-4 * m1[i]["grad_norm"].get<double>());
  }
  LoadedModel a = load_model_dir(one.out_dir), b = load_model_dir(acc.out_dir);
  double worst = 0;
  for (size_t i = 0; i < a.model.num_parameters(); i++)
    worst = std::max(worst, static_cast<double>(std::fabs(a.model.params()[i] - b.model.params()[i])));
  EXPECT_LT(worst, 1e-5);
}

TEST(Trainer, ResumeContinuesBitExactlyAndKeepsOneMetricsLinePerStep) {
  const std::string data = make_shards("resume", {3000});
  std::vector<uint16_t> val(500);
  for (size_t i = 0; i < val.size(); i++) val[i] = static_cast<uint16_t>((i * 7) % 97);
  data::write_shard(data + "/val_000000.bin", val.data(), val.size());
  for (bool shuffle : {false, true}) {
    const std::string whole = data + "/whole", parts = data + "/parts";
    std::filesystem::remove_all(whole);
    std::filesystem::remove_all(parts);
    TrainConfig c = tiny_run(data, whole);
    c.shuffle = shuffle;
    c.dropout = 0.1f;  // the dropout masks must continue too
    c.eval_every = 4;
    train(c);
    // The same run stopped after step 8 with a checkpoint at 6 (as a kill after step 8 leaves it:
    // metrics logged for 7 and 8, nothing saved past 6), then resumed in a fresh Trainer.
    TrainConfig p = c;
    p.out_dir = parts;
    p.save_every = 6;
    p.hooks.stop_after = [](int64_t step) { return step == 8; };
    train(p);
    p.hooks = {};
    auto ck = find_checkpoint(parts);
    ASSERT_TRUE(ck);
    EXPECT_EQ(ck->step, 6);
    EXPECT_EQ(read_metrics(parts).back()["step"], 8);
    TrainConfig rest = p;
    rest.resume = true;
    train(rest);
    EXPECT_EQ(read_file(whole + "/model.safetensors"), read_file(parts + "/model.safetensors")) << shuffle;
    auto mw = read_metrics(whole), mp = read_metrics(parts);
    ASSERT_EQ(mw.size(), mp.size());
    for (size_t i = 0; i < mw.size(); i++) {
      EXPECT_EQ(mw[i]["step"], mp[i]["step"]);
      if (mw[i].contains("loss")) {
        EXPECT_EQ(mw[i]["loss"], mp[i]["loss"]);
      }
      if (mw[i].contains("val_loss")) {
        EXPECT_EQ(mw[i]["val_loss"], mp[i]["val_loss"]);
      }
    }
    // A resumed run that is already complete, or a fresh run into a used directory, is refused.
    EXPECT_THROW(train(rest), Error);
    EXPECT_THROW(train(c), Error);
  }
}

}  // namespace
}  // namespace gpt
