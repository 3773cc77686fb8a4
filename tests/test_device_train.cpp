// Training on a device backend, checked on the CPU: the trainer on the staged CPU backend (device
// memory that is not host memory, backend/staged_backend.h) must give the CPU backend's run bit for
// bit (losses, gradient norms, weights, moments, through a save and a resume); a backend whose
// matrix products read their own copy of the weights (as the CUDA backend's bf16 shadow does) must
// too, which holds only if the trainer calls parameters_changed after every update. Also the rule
// that picks how gradients travel between ranks, and the NCCL communicator's failure without a GPU.
// The multi-rank staging path runs under mpirun in test_cli_mpi.sh.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/staged_backend.h"
#include "core/error.h"
#include "core/io.h"
#include "data/shards.h"
#include "dist/communicator.h"
#include "dist/nccl_communicator.h"
#include "dist/param_sync.h"
#include "model/gpt.h"
#include "test_util.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/device_model.h"
#include "train/trainer.h"

namespace gpt {
namespace {

// The CPU's kernels on memory of its own (host_memory() false), whose matrix products read a copy of
// the weights made in parameters_changed(): stale weights show up as different losses.
class ShadowBackend final : public CpuForwardingBackend {
 public:
  int changes = 0;

  DeviceKind kind() const override { return DeviceKind::CpuStaged; }
  void parameters_changed(const float* params, size_t n) override {
    base_ = params;
    shadow_.assign(params, params + n);
    changes++;
  }
  // The matrix products: weights and biases from the copy.
  void linear_forward(Act* o, const Act* x, const Weight& w, const float* b, int N, int I, int O) override {
    cpu.linear_forward(o, x, S(w), S(b), N, I, O);
  }
  void linear_gelu_forward(Act* o, Act* pre, const Act* x, const Weight& w, const float* b, int N, int I,
                           int O) override {
    cpu.linear_gelu_forward(o, pre, x, S(w), S(b), N, I, O);
  }
  void linear_backward(Act* dx, float* dw, float* db, const Act* d, const Act* x, const float* w, int N,
                       int I, int O, bool acc) override {
    cpu.linear_backward(dx, dw, db, d, x, S(w), N, I, O, acc);
  }
  void linear_gelu_backward(Act* dx, float* dw, float* db, Act* dpre, const Act* d2, const float* w2,
                            const Act* x, const Act* pre, const float* w, int N, int I, int O, int O2,
                            bool acc) override {
    cpu.linear_gelu_backward(dx, dw, db, dpre, d2, S(w2), x, pre, S(w), N, I, O, O2, acc);
  }
  void lm_head_forward(Act* l, const Act* x, const Weight& w, int N, int C, int V) override {
    cpu.lm_head_forward(l, x, S(w), N, C, V);
  }
  void lm_head_backward(Act* dx, float* dw, const Act* dl, const Act* x, const float* w, int N, int C,
                        int V) override {
    cpu.lm_head_backward(dx, dw, dl, x, S(w), N, C, V);
  }

 private:
  // A pointer into the parameters, moved to the same place in the copy.
  Weight S(const Weight& w) const { return {S(w.f32), w.packed}; }
  const float* S(const float* w) const {
    if (!w || !base_ || w < base_ || w >= base_ + shadow_.size()) return w;
    return shadow_.data() + (w - base_);
  }
  const float* base_ = nullptr;
  std::vector<float> shadow_;
};

// Token shards over a vocabulary of 97, with a validation shard.
std::string make_data(const std::string& name) {
  const std::string dir = test::temp_dir(name);
  std::vector<uint16_t> t(3000), v(600);
  for (size_t i = 0; i < t.size(); i++) t[i] = static_cast<uint16_t>((i * i + 3 * i) % 97);
  for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<uint16_t>((i * 7) % 97);
  data::write_shard(dir + "/train_000000.bin", t.data(), t.size());
  data::write_shard(dir + "/val_000000.bin", v.data(), v.size());
  return dir;
}

// Clipping active, shuffled windows, accumulation, dropout, validation and checkpoints.
TrainConfig busy_run(const std::string& data, const std::string& out) {
  TrainConfig c;
  c.data_dir = data;
  c.out_dir = out;
  ModelConfig m;
  m.n_layer = 2;
  m.n_head = 2;
  m.n_embd = 32;
  m.n_ctx = 16;
  m.vocab_size = 97;
  c.model = m;
  c.steps = 10;
  c.batch_size = 2;
  c.grad_accum = 2;
  c.seq_len = 16;
  c.schedule.lr = 3e-3f;
  c.schedule.min_lr = 3e-4f;
  c.schedule.warmup = 3;
  c.grad_clip = 0.3f;
  c.dropout = 0.1f;
  c.shuffle = true;
  c.eval_every = 5;
  c.eval_batches = 2;
  c.quiet = true;
  c.comm = &dist::single_process();
  return c;
}

std::vector<nlohmann::json> read_metrics(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(read_file(out + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("tokens_per_s");  // timings differ run to run
    j.erase("elapsed_s");
    v.push_back(j);
  }
  return v;
}

// Two runs' metrics, final weights and moments, bit for bit.
void expect_same_run(const std::string& a, const std::string& b) {
  const auto ma = read_metrics(a), mb = read_metrics(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); i++) EXPECT_EQ(ma[i], mb[i]) << "metrics line " << i + 1;
  const std::string ck = "/checkpoint-00000010/";
  EXPECT_TRUE(read_file(a + ck + "model.safetensors") == read_file(b + ck + "model.safetensors"));
  EXPECT_TRUE(read_file(a + ck + "optimizer.safetensors") == read_file(b + ck + "optimizer.safetensors"));
}

TEST(DeviceTrain, StagedBackendEqualsTheCpuBitForBitThroughASaveAndResume) {
  const std::string data = make_data("devtrain_staged");
  const std::string cpu = data + "/cpu", dev = data + "/dev";
  TrainConfig c = busy_run(data, cpu);
  train(c);
  // Clipping must have acted for the comparison to cover it.
  int clipped = 0;
  for (const auto& j : read_metrics(cpu))
    if (j.contains("grad_norm") && j["grad_norm"].get<double>() > c.grad_clip) clipped++;
  EXPECT_GT(clipped, 5);

  StagedCpuBackend& staged = staged_cpu_backend();
  const int changes0 = staged.param_changes, downloads0 = staged.downloads;
  const size_t live0 = staged.live_bytes;
  TrainConfig d = c;
  d.out_dir = dev;
  d.device = "cpu-staged";
  d.save_every = 4;
  d.hooks.stop_after = [](int64_t step) { return step == 6; };  // a checkpoint at 4, steps 5-6 logged, then gone
  train(d);
  d.hooks = {};
  ASSERT_EQ(find_checkpoint(dev)->step, 4);
  d.resume = true;
  train(d);
  expect_same_run(cpu, dev);
  // parameters_changed once per step at least, and the checkpoints came down from the device.
  EXPECT_GE(staged.param_changes - changes0, 6 + 6);
  EXPECT_GT(staged.downloads - downloads0, 0);
  EXPECT_EQ(staged.live_bytes, live0);  // the runs released every device buffer
  std::filesystem::remove_all(data);
}

TEST(DeviceTrain, WeightCopiesAreRefreshedAfterEveryUpdate) {
  const std::string data = make_data("devtrain_shadow");
  TrainConfig c = busy_run(data, data + "/cpu");
  train(c);
  ShadowBackend shadow;
  TrainConfig d = c;
  d.out_dir = data + "/shadow";
  d.backend = &shadow;
  train(d);
  expect_same_run(c.out_dir, d.out_dir);
  EXPECT_GE(shadow.changes, c.steps);
  std::filesystem::remove_all(data);
}

TEST(DeviceTrain, TheShadowBackendCatchesAMissedParametersChanged) {
  // The control for the test above: an update the backend is not told about leaves its products on
  // the old weights, and the losses part from the CPU's.
  ModelConfig m;
  m.n_layer = 1;
  m.n_head = 2;
  m.n_embd = 16;
  m.n_ctx = 8;
  m.vocab_size = 31;
  ShadowBackend shadow;
  GPT host(m), dev(m, shadow);
  host.init_gpt2(4);
  dev.init_gpt2(4);
  AdamW oh(host, {.lr = 1e-2f}), od(dev, {.lr = 1e-2f});
  std::vector<TokenId> x = {1, 5, 9, 2, 7, 3, 8, 4};
  std::vector<int32_t> y = {5, 9, 2, 7, 3, 8, 4, 6};
  for (GPT* g : {&host, &dev}) {
    g->zero_grad();
    g->forward(x.data(), y.data(), 1, 8, true, 1);
    g->backward();
  }
  oh.step(1e-2f);
  od.step(1e-2f);
  const float lh = host.forward(x.data(), y.data(), 1, 8);
  EXPECT_NE(dev.forward(x.data(), y.data(), 1, 8), lh);  // stale copies
  shadow.parameters_changed(dev.device_params(), dev.num_parameters());
  EXPECT_EQ(dev.forward(x.data(), y.data(), 1, 8), lh);
}

TEST(DeviceTrain, ModelsMoveOntoABackendWithTheirWeights) {
  ModelConfig m;
  m.n_layer = 1;
  m.n_head = 2;
  m.n_embd = 16;
  m.n_ctx = 8;
  m.vocab_size = 31;
  GPT host(m);
  host.init_gpt2(9);
  GPT copy(m);
  copy.init_gpt2(9);
  StagedCpuBackend dev;
  GPT moved = on_backend(std::move(copy), dev);
  EXPECT_EQ(&moved.backend(), &dev);
  std::vector<TokenId> x = {1, 5, 9, 2};
  std::vector<int32_t> y = {5, 9, 2, 7};
  EXPECT_EQ(moved.forward(x.data(), y.data(), 1, 4, true, 0),
            host.forward(x.data(), y.data(), 1, 4, true, 0));
  moved.zero_grad();
  host.zero_grad();
  moved.backward();
  host.backward();
  const std::vector<float> g = host_gradients(moved);
  for (size_t i = 0; i < g.size(); i++) ASSERT_EQ(g[i], host.grads()[i]) << i;
  // Already there: the same model back.
  GPT again = on_backend(std::move(moved), dev);
  EXPECT_EQ(&again.backend(), &dev);
}

TEST(DeviceTrain, MomentsRoundTripThroughACheckpointOnADevice) {
  ModelConfig m;
  m.n_layer = 1;
  m.n_head = 2;
  m.n_embd = 16;
  m.n_ctx = 8;
  m.vocab_size = 31;
  StagedCpuBackend dev;
  GPT g(m, dev);
  g.init_gpt2(2);
  AdamW opt(g, {});
  const size_t n = opt.size();
  std::vector<float> mv(n), vv(n);
  for (size_t i = 0; i < n; i++) {
    mv[i] = 0.5f * static_cast<float>(i);
    vv[i] = 0.25f * static_cast<float>(i);
  }
  opt.upload_moments(mv.data(), vv.data());
  opt.set_steps(5);
  const std::string dir = test::temp_dir("devtrain_moments");
  std::filesystem::remove_all(dir + "/out");
  save_checkpoint(dir + "/out", 5, g, nullptr, opt, test::trainer_state_at(5));
  const auto ck = find_checkpoint(dir + "/out");
  ASSERT_TRUE(ck);
  for (int R : {1, 3})
    for (const auto& r : dist::shard_ranges(n, R)) {
      AdamW s(g, {}, r);
      load_optimizer_state(ck->dir, s);
      std::vector<float> a(s.size()), b(s.size());
      s.download_moments(a.data(), b.data());
      for (size_t i = 0; i < s.size(); i++) {
        ASSERT_EQ(a[i], mv[r.begin + i]);
        ASSERT_EQ(b[i], vv[r.begin + i]);
      }
      EXPECT_EQ(s.steps(), 5);
    }
  std::filesystem::remove_all(dir);
}

TEST(ParamSync, ThePathFollowsTheMemoryTheRanksAndTheBuild) {
  using dist::choose_sync_path;
  using dist::SyncPath;
  for (bool nccl : {false, true}) {
    EXPECT_EQ(choose_sync_path(DeviceKind::Cpu, true, 1, nccl), SyncPath::Local);
    EXPECT_EQ(choose_sync_path(DeviceKind::Cuda, false, 1, nccl), SyncPath::Local);
    EXPECT_EQ(choose_sync_path(DeviceKind::Cpu, true, 2, nccl), SyncPath::Direct);
    EXPECT_EQ(choose_sync_path(DeviceKind::CpuStaged, false, 2, nccl), SyncPath::Staged);
  }
  EXPECT_EQ(choose_sync_path(DeviceKind::Cuda, false, 2, true), SyncPath::Nccl);
  EXPECT_EQ(choose_sync_path(DeviceKind::CudaFp32, false, 8, true), SyncPath::Nccl);
  EXPECT_EQ(choose_sync_path(DeviceKind::Cuda, false, 2, false), SyncPath::Staged);  // no NCCL: through the host
  EXPECT_EQ(gpu_for_local_rank(0, 4), 0);
  EXPECT_EQ(gpu_for_local_rank(3, 4), 3);
  EXPECT_EQ(gpu_for_local_rank(5, 4), 1);  // more ranks than GPUs: they share
  EXPECT_EQ(gpu_for_local_rank(0, 0), -1);
}

TEST(ParamSync, OneRankMovesNothingAndTheNcclPathNeedsDevicePointers) {
  StagedCpuBackend dev;
  std::vector<float> g = {1, 2, 3};
  dist::ParamSync local(dist::SyncPath::Local, dist::single_process(), nullptr, dev, {3});
  local.reduce_scatter(g.data());
  local.allgather(g.data());
  EXPECT_EQ(g, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(dev.uploads + dev.downloads, 0);
  EXPECT_THROW(dist::ParamSync(dist::SyncPath::Nccl, dist::single_process(), nullptr, dev, {3}), Error);
  // Device memory handed to MPI directly would be a bug on a GPU: refused.
  EXPECT_THROW(dist::ParamSync(dist::SyncPath::Direct, dist::single_process(), nullptr, dev, {3}), Error);
  EXPECT_THROW(dist::ParamSync(dist::SyncPath::Local, dist::single_process(), nullptr, dev, {1, 2}), Error);
}

TEST(Nccl, MakingOneWithoutAGpuIsOneClearError) {
  // NCCL itself runs only with GPUs (unverified here); without one, or in a build without NCCL,
  // asking for it is a gpt::Error, never a crash.
  try {
    // The CUDA backend when there is a GPU; the CPU's otherwise (refused: NCCL needs device memory).
    Backend* be = &cpu_backend();
    try {
      be = &backend_for(DeviceKind::Cuda);
    } catch (const Error&) {
    }
    auto c = dist::make_nccl_communicator(dist::single_process(), *be);
    EXPECT_TRUE(dist::nccl_compiled_in());
    EXPECT_TRUE(c->device_pointers());
    EXPECT_EQ(c->size(), 1);
    EXPECT_NE(c->describe().find("NCCL"), std::string::npos);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (dist::nccl_compiled_in())
      EXPECT_NE(msg.find("NCCL"), std::string::npos) << msg;
    else
      EXPECT_NE(msg.find("no NCCL"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace gpt
