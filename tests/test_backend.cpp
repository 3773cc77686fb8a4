// The Backend interface: the model must reach its memory only through the backend. A stand-in
// "device" backend runs the CPU kernels but keeps its memory apart (host_memory() = false) and
// counts the copies, so the device code paths of GPT (uploading parameters, downloading logits and
// losses, gradients in backend memory) are exercised on any machine. The CUDA backend's own
// tests are in test_cuda_backend.cpp (they need a GPU).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "grad_check.h"
#include "model/gpt.h"

namespace gpt {
namespace {

// Forwards every op to the CPU backend; memory is "device" memory: allocations are tracked, and the
// model may only fill or read it through to_device / to_host / act_to_host_f32.
class FakeDevice final : public Backend {
 public:
  Backend& cpu = cpu_backend();
  int uploads = 0, downloads = 0, param_changes = 0;
  size_t live_bytes = 0;

  std::string_view name() const override { return "fake-device"; }
  ActType act_type() const override { return ActType::F32; }
  bool host_memory() const override { return false; }
  void* allocate(size_t bytes) override {
    live_bytes += bytes;
    sizes_.push_back({cpu.allocate(bytes), bytes});
    return sizes_.back().first;
  }
  void release(void* p) override {
    for (auto& [q, n] : sizes_)
      if (q == p) {
        live_bytes -= n;
        q = nullptr;
      }
    cpu.release(p);
  }
  void to_device(void* d, const void* s, size_t n) override {
    uploads++;
    std::memcpy(d, s, n);
  }
  void to_host(void* d, const void* s, size_t n) override {
    downloads++;
    std::memcpy(d, s, n);
  }
  void act_to_host_f32(float* d, const Act* s, size_t n) override { to_host(d, s, n * sizeof(float)); }
  void fill_zero(void* p, size_t n) override { cpu.fill_zero(p, n); }
  void copy(void* d, const void* s, size_t n) override { cpu.copy(d, s, n); }
  void synchronize() override {}
  void parameters_changed(const float*, size_t) override { param_changes++; }

  void embedding_forward(Act* o, const TokenId* i, const float* a, const float* b, int B, int T, int C) override {
    cpu.embedding_forward(o, i, a, b, B, T, C);
  }
  void embedding_backward(float* a, float* b, const Act* d, const TokenId* i, int B, int T, int C) override {
    cpu.embedding_backward(a, b, d, i, B, T, C);
  }
  void layernorm_forward(Act* o, float* m, float* r, const Act* x, const float* w, const float* b, int N, int C,
                         float eps) override {
    cpu.layernorm_forward(o, m, r, x, w, b, N, C, eps);
  }
  void layernorm_backward(Act* dx, float* dw, float* db, const Act* d, const Act* x, const float* w,
                          const float* m, const float* r, int N, int C) override {
    cpu.layernorm_backward(dx, dw, db, d, x, w, m, r, N, C);
  }
  void residual_layernorm_forward(Act* res, Act* o, float* m, float* r, const Act* a, const Act* b,
                                  ops::Dropout dr, const float* w, const float* bias, int N, int C,
                                  float eps) override {
    cpu.residual_layernorm_forward(res, o, m, r, a, b, dr, w, bias, N, C, eps);
  }
  void linear_forward(Act* o, const Act* x, const float* w, const float* b, int N, int I, int O) override {
    cpu.linear_forward(o, x, w, b, N, I, O);
  }
  void linear_gelu_forward(Act* o, Act* pre, const Act* x, const float* w, const float* b, int N, int I,
                           int O) override {
    cpu.linear_gelu_forward(o, pre, x, w, b, N, I, O);
  }
  void linear_backward(Act* dx, float* dw, float* db, const Act* d, const Act* x, const float* w, int N, int I,
                       int O, bool acc) override {
    cpu.linear_backward(dx, dw, db, d, x, w, N, I, O, acc);
  }
  void gelu_backward(Act* dx, const Act* pre, const Act* d, size_t n) override { cpu.gelu_backward(dx, pre, d, n); }
  size_t attention_saved_bytes(int B, int T, int C, int H) const override {
    return cpu_backend().attention_saved_bytes(B, T, C, H);
  }
  size_t attention_scratch_bytes(int B, int T, int C, int H) const override {
    return cpu_backend().attention_scratch_bytes(B, T, C, H);
  }
  void attention_forward(Act* o, void* s, void* sc, const Act* qkv, int B, int T, int C, int H, int band,
                         ops::Dropout d, bool tr) override {
    cpu.attention_forward(o, s, sc, qkv, B, T, C, H, band, d, tr);
  }
  void attention_backward(Act* dq, void* sc, const Act* d, const Act* qkv, const Act* o, const void* s, int B,
                          int T, int C, int H, int band, ops::Dropout dr) override {
    cpu.attention_backward(dq, sc, d, qkv, o, s, B, T, C, H, band, dr);
  }
  void residual_forward(Act* o, const Act* a, const Act* b, size_t n, ops::Dropout d) override {
    cpu.residual_forward(o, a, b, n, d);
  }
  void dropout_forward(Act* x, size_t n, ops::Dropout d) override { cpu.dropout_forward(x, n, d); }
  void dropout_backward(Act* dx, const Act* d, size_t n, ops::Dropout dr) override {
    cpu.dropout_backward(dx, d, n, dr);
  }
  void lm_head_forward(Act* l, const Act* x, const float* w, int N, int C, int V) override {
    cpu.lm_head_forward(l, x, w, N, C, V);
  }
  void lm_head_backward(Act* dx, float* dw, const Act* dl, const Act* x, const float* w, int N, int C,
                        int V) override {
    cpu.lm_head_backward(dx, dw, dl, x, w, N, C, V);
  }
  double cross_entropy_forward(float* l, float* lse, const Act* lg, const int32_t* t, int N, int V) override {
    return cpu.cross_entropy_forward(l, lse, lg, t, N, V);
  }
  void cross_entropy_backward(Act* lg, const float* lse, const int32_t* t, int N, int V, float s) override {
    cpu.cross_entropy_backward(lg, lse, t, N, V, s);
  }
  void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const ops::AdamWStep& s) override {
    cpu.adamw_update(p, g, m, v, n, s);
  }
  double sum_squares(const float* x, size_t n) override { return cpu.sum_squares(x, n); }
  void scale(float* x, size_t n, float f) override { cpu.scale(x, n, f); }

 private:
  std::vector<std::pair<void*, size_t>> sizes_;
};

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
      FakeDevice dev;
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
  FakeDevice dev;
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
  FakeDevice dev;
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
