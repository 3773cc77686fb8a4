// The Backend interface: the model must reach its memory only through the backend. The staged
// CPU backend (backend/staged_backend.h) runs the CPU kernels but keeps its memory apart
// (host_memory() = false) and counts the copies, so the device code paths of GPT (uploading
// parameters, downloading logits and losses, gradients in backend memory) run on any machine. The CUDA
// backend's own tests are in test_cuda_backend.cpp (they need a GPU).
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

// The fused MLP backward is, on the CPU, exactly the three calls it replaces.
TEST(Backend, LinearGeluBackwardIsTheSeparateCallsBitForBit) {
  Backend& cpu = cpu_backend();
  const int N = 9, IC = 12, OC = 20, OC2 = 7;
  const auto inp = test::randn(N * IC, 1), pre = test::randn(N * OC, 2, 2.0f),
             dout2 = test::randn(N * OC2, 3);
  const auto w = test::randn(IC * OC, 4), w2 = test::randn(OC * OC2, 5);
  for (bool acc : {false, true}) {
    auto dinp = test::randn(N * IC, 6), dw = test::randn(IC * OC, 7), db = test::randn(OC, 8);
    auto dinp2 = dinp, dw2 = dw, db2 = db;
    std::vector<float> dpre(N * OC), dpre2(N * OC);
    cpu.linear_backward(dpre.data(), nullptr, nullptr, dout2.data(), nullptr, w2.data(), N, OC, OC2, false);
    cpu.gelu_backward(dpre.data(), pre.data(), dpre.data(), dpre.size());
    cpu.linear_backward(dinp.data(), dw.data(), db.data(), dpre.data(), inp.data(), w.data(), N, IC, OC, acc);
    cpu.linear_gelu_backward(dinp2.data(), dw2.data(), db2.data(), dpre2.data(), dout2.data(), w2.data(),
                             inp.data(), pre.data(), w.data(), N, IC, OC, OC2, acc);
    EXPECT_EQ(dpre2, dpre);
    EXPECT_EQ(dinp2, dinp);
    EXPECT_EQ(dw2, dw);
    EXPECT_EQ(db2, db);
  }
  // and against finite differences of  loss = r . (gelu(inp @ w + b) @ w2): d loss / d inp
  const int n = 3;
  auto x = test::randn(n * IC, 9);
  const auto b = test::randn(OC, 10), r = test::randn(n * OC2, 11);
  auto loss = [&] {
    std::vector<float> p(n * OC), g(n * OC), y(n * OC2);
    cpu.linear_gelu_forward(g.data(), p.data(), x.data(), w.data(), b.data(), n, IC, OC);
    cpu.linear_forward(y.data(), g.data(), w2.data(), nullptr, n, OC, OC2);
    return test::project(y.data(), r);
  };
  std::vector<float> p(n * OC), g(n * OC), dx(n * IC), dpre(n * OC);
  cpu.linear_gelu_forward(g.data(), p.data(), x.data(), w.data(), b.data(), n, IC, OC);
  cpu.linear_gelu_backward(dx.data(), nullptr, nullptr, dpre.data(), r.data(), w2.data(), x.data(), p.data(),
                           w.data(), n, IC, OC, OC2, false);
  test::expect_gradient("dinp", x.data(), x.size(), dx.data(), loss);
}

// The model hands the embedding backward the ids it keeps in host memory (no device round trip).
TEST(Backend, EmbeddingBackwardGetsHostIds) {
  StagedCpuBackend dev;
  GPT m(small(LnPlacement::Pre, AttentionKind::Dense), dev);
  m.init_gpt2(1);
  std::vector<TokenId> x = {1, 2, 3, 1};
  std::vector<int32_t> y = {2, 3, 4, 5};
  m.forward(x.data(), y.data(), 1, 4, true, 1);
  const int downloads = dev.downloads;
  m.backward();
  EXPECT_EQ(dev.host_id_calls, 1);
  EXPECT_EQ(dev.downloads, downloads);  // the backward reads nothing back
}

// The decoding ops against the training ops: keys and values written into a cache (in any order,
// with a cache longer than the sequence) and one query per row attending over it give the rows of
// attention_forward; embeddings at positions give embedding_forward.
TEST(Backend, DecodeOpsMatchTheFullAttention) {
  Backend& cpu = cpu_backend();
  const int B = 2, T = 13, C = 24, H = 3, n_ctx = 16, V = 11;
  const size_t N = static_cast<size_t>(B) * T;
  const auto qkv = test::randn(N * 3 * C, 1, 2.0f);
  for (int band : {0, 5}) {
    std::vector<float> ref(N * C), scratch(cpu.attention_scratch_bytes(B, T, C, H) / sizeof(float) + 1);
    cpu.attention_forward(ref.data(), nullptr, scratch.data(), qkv.data(), B, T, C, H, band, {}, false);
    std::vector<float> K(static_cast<size_t>(B) * n_ctx * C, 7.0f), Vc = K, out(N * C);
    std::vector<int32_t> rows(N), pos(N);
    for (size_t i = 0; i < N; i++) {
      rows[i] = static_cast<int32_t>(i / T);
      pos[i] = static_cast<int32_t>(i % T);
    }
    // written back to front, one row at a time: the order must not matter
    for (size_t i = N; i-- > 0;)
      cpu.kv_cache_write(K.data(), Vc.data(), KvType::F32, qkv.data() + i * 3 * C,
                         CacheIndex{&rows[i], &pos[i], &rows[i], &pos[i]}, 1, C, H, n_ctx);
    // the layout is [row][head][position][head_dim]
    const int hs = C / H;
    EXPECT_EQ(K[((1 * H + 2) * n_ctx + 4) * hs + 3], qkv[(1 * T + 4) * 3 * C + C + 2 * hs + 3]);
    EXPECT_EQ(Vc[((0 * H + 1) * n_ctx + 12) * hs + 0], qkv[(0 * T + 12) * 3 * C + 2 * C + 1 * hs]);
    std::vector<float> ds(cpu.attention_cached_scratch_bytes(static_cast<int>(N), C, H, n_ctx) /
                          sizeof(float) + 1);
    const CacheIndex all{rows.data(), pos.data(), rows.data(), pos.data()};
    cpu.attention_cached(out.data(), ds.data(), qkv.data(), K.data(), Vc.data(), KvType::F32, all,
                         static_cast<int>(N), C, H, n_ctx, band, nullptr);
    for (size_t i = 0; i < out.size(); i++)
      ASSERT_NEAR(out[i], ref[i], 1e-5f) << "band " << band << " at " << i;
  }
  const auto wte = test::randn(V * C, 2), wpe = test::randn(T * C, 3);
  std::vector<TokenId> ids(N);
  std::vector<int32_t> pos(N);
  for (size_t i = 0; i < N; i++) {
    ids[i] = static_cast<TokenId>((5 * i + 1) % V);
    pos[i] = static_cast<int32_t>(i % T);
  }
  std::vector<float> a(N * C), b(N * C);
  cpu.embedding_forward(a.data(), ids.data(), wte.data(), wpe.data(), B, T, C);
  cpu.embedding_at(b.data(), ids.data(), pos.data(), wte.data(), wpe.data(), static_cast<int>(N), C);
  EXPECT_EQ(a, b);
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
  // "cuda" and "cuda-fp32" either work (a CUDA build on a GPU machine) or say clearly why not.
  for (const char* name : {"cuda", "cuda-fp32"}) {
    try {
      Backend& be = backend_for(name);
      EXPECT_EQ(be.name(), name);
      EXPECT_EQ(be.act_type(), std::string(name) == "cuda" ? ActType::BF16 : ActType::F32);
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(msg.find("no CUDA backend") != std::string::npos ||
                  msg.find("no CUDA GPU") != std::string::npos)
          << msg;
    }
  }
}

}  // namespace
}  // namespace gpt
