// The Backend interface: the model must reach its memory only through the backend. The staged
// CPU backend (backend/staged_backend.h) runs the CPU kernels but keeps its memory apart
// (host_memory() = false) and counts the copies, so the device code paths of GPT (uploading
// parameters, downloading logits and losses, gradients in backend memory) run on any machine. The CUDA backend's own
// tests are in test_cuda_backend.cpp (they need a GPU).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/staged_backend.h"
#include "core/error.h"
#include "grad_check.h"
#include "model/gpt.h"

namespace gpt {
namespace {

ModelConfig small(LnPlacement ln, AttentionKind att) {
  ModelConfig c;
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 16;
  c.n_ctx = 12;
  c.vocab_size = 23;
  c.ln = ln;
  c.attention = att;
  c.band = 3;
  c.dropout = 0.1f;
  return c;
}

TEST(Backend, DeviceMemoryPathGivesTheCpuResults) {
  for (auto ln : {LnPlacement::Pre, LnPlacement::Post})
    for (auto att : {AttentionKind::Dense, AttentionKind::AlternatingBanded}) {
      SCOPED_TRACE(testing::Message() << "post-LN " << (ln == LnPlacement::Post) << " banded "
                                      << (att == AttentionKind::AlternatingBanded));
      const ModelConfig cfg = small(ln, att);
      StagedCpuBackend dev;
      GPT host(cfg), device(cfg, dev);
      host.init_gpt2(5);
      device.init_gpt2(5);
      EXPECT_NE(device.device_params(), device.params());  // a separate copy
      const int B = 2, T = 10;
      std::vector<TokenId> x(B * T);
      std::vector<int32_t> y(B * T);
      for (int i = 0; i < B * T; i++) {
        x[i] = static_cast<TokenId>((7 * i + 3) % cfg.vocab_size);
        y[i] = i % 5 == 0 ? kIgnoreIndex : (5 * i + 1) % cfg.vocab_size;
      }
      const float lh = host.forward(x.data(), y.data(), B, T, true, 42);
      const float ld = device.forward(x.data(), y.data(), B, T, true, 42);
      EXPECT_EQ(lh, ld);
      EXPECT_GE(dev.param_changes, 1);  // the first forward uploaded the parameters
      const size_t nl = static_cast<size_t>(B) * T * cfg.vocab_size;
      const float* gh = host.logits();
      const float* gd = device.logits();
      ASSERT_NE(gd, nullptr);
      for (size_t i = 0; i < nl; i++) ASSERT_EQ(gh[i], gd[i]) << i;
      for (int i = 0; i < B * T; i++) ASSERT_EQ(host.position_losses()[i], device.position_losses()[i]);
      host.backward();
      device.backward();
      // gradients live in device memory: read them back through the interface
      std::vector<float> g(device.num_parameters());
      dev.to_host(g.data(), device.grads(), g.size() * sizeof(float));
      for (size_t i = 0; i < g.size(); i++) ASSERT_EQ(host.grads()[i], g[i]) << i;
    }
}

TEST(Backend, HostChangesReachTheDeviceCopy) {
  StagedCpuBackend dev;
  const ModelConfig cfg = small(LnPlacement::Pre, AttentionKind::Dense);
  GPT m(cfg, dev);
  m.init_gpt2(1);
  std::vector<TokenId> x = {1, 2, 3, 4};
  std::vector<int32_t> y = {2, 3, 4, 5};
  const float before = m.forward(x.data(), y.data(), 1, 4);
  const int changes = dev.param_changes;
  const float again = m.forward(x.data(), y.data(), 1, 4);
  EXPECT_EQ(before, again);
  EXPECT_EQ(dev.param_changes, changes);  // nothing changed: no upload
  m.param("wpe.weight")[0] += 1.0f;       // a mutable access marks the host copy
  const float after = m.forward(x.data(), y.data(), 1, 4);
  EXPECT_EQ(dev.param_changes, changes + 1);
  EXPECT_NE(before, after);
  // download_parameters brings the device copy back over the host one
  std::vector<float> dv(m.num_parameters(), 0.25f);
  dev.to_device(m.device_params(), dv.data(), dv.size() * sizeof(float));
  m.download_parameters();
  EXPECT_EQ(static_cast<const GPT&>(m).params()[7], 0.25f);
}

TEST(Backend, ModelMemoryIsReleasedThroughTheBackend) {
  StagedCpuBackend dev;
  {
    GPT m(small(LnPlacement::Pre, AttentionKind::AlternatingBanded), dev);
    std::vector<TokenId> x = {1, 2, 3};
    std::vector<int32_t> y = {2, 3, 4};
    m.forward(x.data(), y.data(), 1, 3, true, 1);
    m.backward();
    EXPECT_GT(dev.live_bytes, m.num_parameters() * sizeof(float) * 2);
  }
  EXPECT_EQ(dev.live_bytes, 0u);
}

TEST(Backend, PickingOne) {
  EXPECT_EQ(backend_for("cpu").name(), "cpu");
  EXPECT_TRUE(backend_for("cpu").host_memory());
  try {
    backend_for("tpu");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown device \"tpu\""), std::string::npos);
  }
  // "cuda" either works (a CUDA build on a GPU machine) or says clearly why not.
  try {
    EXPECT_EQ(backend_for("cuda").name(), "cuda");
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("no CUDA backend") != std::string::npos || msg.find("no CUDA GPU") != std::string::npos)
        << msg;
  }
}

}  // namespace
}  // namespace gpt
