// Where a model's tensors live and how its operations run. The network (model/gpt.cpp) is written
// once against this interface; CpuBackend (backend/cpu_backend.cpp) runs the kernels of ops/cpu,
// CudaBackend (backend/cuda/) runs CUDA kernels on an NVIDIA GPU. See docs/backends.md.
//
// Precision. Parameters, gradients and optimizer state are fp32 on every backend. Activations have
// the backend's activation type: fp32 on the CPU and on "cuda-fp32"; bf16 on "cuda" (mixed
// precision), where the GEMMs read bf16 copies of the weights that the backend refreshes in
// parameters_changed(). Per-row
// statistics (LayerNorm mean and rstd, losses, log-sum-exp) are fp32 everywhere.
//
// Pointers. Every pointer an operation takes is backend memory (from allocate()): host memory on
// the CPU, device memory on CUDA. `Act` marks an activation (act_type() elements), `float*` an fp32
// tensor. Operations are asynchronous on devices; synchronize() waits, and to_host() or the
// functions returning a value to the host synchronize by themselves.
//
// Contracts are those of ops/ops.h, operation for operation (shapes, what is overwritten and what
// is accumulated); where an operation here differs from ops.h it says so.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "ops/ops.h"
#include "ops/packed.h"

namespace gpt {

enum class ActType : uint8_t { F32, BF16 };  // activation element types
inline size_t act_size(ActType t) { return t == ActType::F32 ? 4 : 2; }

using Act = void;  // an activation tensor of the backend's act_type()

// The devices a model can run on. Told apart by this kind, never by comparing names.
enum class DeviceKind : uint8_t {
  Cpu,        // "cpu": host memory, fp32, the kernels of ops/cpu
  CpuStaged,  // "cpu-staged": the CPU behind device-style memory, for tests (staged_backend.h)
  Cuda,       // "cuda": bf16 activations and products, fp32 masters
  CudaFp32,   // "cuda-fp32": fp32 throughout, for conformance
};
const char* device_name(DeviceKind k);          // "cpu", "cpu-staged", "cuda", "cuda-fp32"
DeviceKind parse_device(std::string_view name);  // throws gpt::Error naming the choices
bool is_cuda(DeviceKind k);

// A weight matrix the backend holds in an inference format (f32, bf16 or q8: ops/packed.h), made
// from a host ops::PackedMatrix by Backend::adopt_weight. The model multiplies by it exactly as by
// its fp32 masters; it cannot train.
class PackedWeight {
 public:
  virtual ~PackedWeight() = default;
  virtual ops::WeightType type() const = 0;
  virtual int in() const = 0;
  virtual int out() const = 0;
  virtual size_t bytes() const = 0;
  // The matrix itself when the backend keeps it in host memory (the CPU backends), else null.
  virtual const ops::PackedMatrix* host() const { return nullptr; }
};

// A matrix operand of the forward operations: the fp32 master (backend memory; GPT-2's Conv1D
// [IC, OC] for a projection, [V, C] rows for the token embedding and the LM head), or the packed
// copy, which is used whenever it is set (`f32` may then be null).
struct Weight {
  const float* f32 = nullptr;
  const PackedWeight* packed = nullptr;
  Weight() = default;
  Weight(const float* m) : f32(m) {}  // NOLINT: an fp32 master is a weight
  Weight(const PackedWeight* p) : packed(p) {}  // NOLINT
  Weight(std::nullptr_t) {}  // NOLINT
  Weight(const float* m, const PackedWeight* p) : f32(m), packed(p) {}
};

// The element type of a key/value cache.
enum class KvType : uint8_t { F32, F16, BF16 };
inline size_t kv_size(KvType t) { return t == KvType::F32 ? 4 : 2; }

// Where the N inputs of a cached pass sit: input i at position pos[i] of cache row rows[i], both in
// backend memory, and the same two arrays in host memory (for a backend that chooses a kernel by them).
struct CacheIndex {
  const int32_t* rows = nullptr;
  const int32_t* pos = nullptr;
  const int32_t* host_rows = nullptr;
  const int32_t* host_pos = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind kind() const = 0;
  std::string_view name() const { return device_name(kind()); }
  virtual ActType act_type() const = 0;
  // True when backend memory is host memory (the CPU): the model then needs no copies.
  virtual bool host_memory() const = 0;
  // The device in words (e.g. "NVIDIA H100 80GB HBM3, sm_90"), for benchmarks and `gpt info`.
  virtual std::string device_description() const { return std::string(name()); }
  // The device's dense bf16 peak in FLOP/s (the MFU denominator); 0 when unknown.
  virtual double peak_bf16_flops() const { return 0.0; }
  // For a library that queues work beside the backend's (NCCL): the device's ordinal and the queue
  // the backend runs on (a cudaStream_t on CUDA); -1 and null where there is none (the CPU).
  virtual int device_index() const { return -1; }
  virtual void* native_stream() { return nullptr; }

  // ---- memory ----------------------------------------------------------------------------------
  // bytes of zeroed memory, 256-byte aligned. Throws gpt::Error when it cannot.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void to_host(void* host_dst, const void* src, size_t bytes) = 0;
  // n activations to fp32 host floats (a copy on the CPU, a download and widening on CUDA).
  virtual void act_to_host_f32(float* host_dst, const Act* src, size_t n) = 0;
  virtual void fill_zero(void* p, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // The fp32 parameters (n floats at params) changed: a backend with low-precision weight copies
  // refreshes them here. The model calls it after loading and the trainer after each update.
  virtual void parameters_changed(const float* params, size_t n) = 0;

  // ---- packed weights -----------------------------------------------------------------------------
  // Takes a host matrix in an inference format and returns the backend's copy (the CPU keeps the
  // matrix itself). A backend without kernels for the format throws gpt::Error saying so.
  virtual std::unique_ptr<PackedWeight> adopt_weight(ops::PackedMatrix&& m);

  // ---- embeddings: out[n] = wte[ids[n]] + wpe[n % T] --------------------------------------------
  virtual void embedding_forward(Act* out, const TokenId* ids, const Weight& wte, const float* wpe, int B, int T,
                                 int C) = 0;
  // host_ids: the same ids in host memory, or null. A device backend that sorts the ids on the host
  // (CUDA's deterministic wte gradient) then needs no download and no synchronisation.
  virtual void embedding_backward(float* dwte, float* dwpe, const Act* dout, const TokenId* ids,
                                  const TokenId* host_ids, int B, int T, int C) = 0;

  // ---- LayerNorm (b may be null) -----------------------------------------------------------------
  virtual void layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* w,
                                 const float* b, int N, int C, float eps) = 0;
  // dinp += ..., dw += ..., db += ...
  virtual void layernorm_backward(Act* dinp, float* dw, float* db, const Act* dout, const Act* inp,
                                  const float* w, const float* mean, const float* rstd, int N, int C) = 0;
  // Fused: res = a + dropout(b), then out = LayerNorm(res). (pre-LN: a residual add followed by the
  // next LayerNorm.)
  virtual void residual_layernorm_forward(Act* res, Act* out, float* mean, float* rstd, const Act* a,
                                          const Act* b, ops::Dropout drop, const float* w, const float* bias,
                                          int N, int C, float eps) = 0;

  // ---- linear layers, Conv1D layout: out[N,OC] = inp[N,IC] @ w[IC,OC] + bias ---------------------
  // A packed w: out = inp @ W^T + bias with W [OC, IC] in its format (ops::packed_linear).
  virtual void linear_forward(Act* out, const Act* inp, const Weight& w, const float* bias, int N, int IC,
                              int OC) = 0;
  // Fused with GELU: pre = inp @ w + bias, out = gelu(pre); both kept for the backward.
  virtual void linear_gelu_forward(Act* out, Act* pre, const Act* inp, const Weight& w, const float* bias, int N,
                                   int IC, int OC) = 0;
  // out = gelu(inp) (out may not be inp).
  virtual void gelu_forward(Act* out, const Act* inp, size_t n) = 0;
  // dinp = (or += when accumulate) dout @ w^T; dw += inp^T @ dout; dbias += column sums. Any of
  // dinp, dw, dbias may be null.
  virtual void linear_backward(Act* dinp, float* dw, float* dbias, const Act* dout, const Act* inp,
                               const float* w, int N, int IC, int OC, bool accumulate) = 0;
  // dinp = dout * gelu'(pre); dinp may be dout.
  virtual void gelu_backward(Act* dinp, const Act* pre, const Act* dout, size_t n) = 0;
  // The backward of linear_gelu_forward (pre = inp @ w + bias, out = gelu(pre)), with the gradient
  // of out given as the product that makes it: the next layer read out through w2 [OC, OC2], and
  // dout2 [N, OC2] is the gradient of that layer's output. Computes
  //   dpre = (dout2 @ w2^T) * gelu'(pre)              (overwritten; [N, OC])
  //   dw += inp^T @ dpre;  dbias += column sums of dpre;  dinp = (or += when accumulate) dpre @ w^T
  // which is linear_backward(dpre, null, null, dout2, ., w2), gelu_backward(dpre, pre, dpre) and
  // linear_backward(dinp, dw, dbias, dpre, inp, w) in one call, so that a GPU can apply gelu' in the
  // epilogue of the product that makes dpre (cuBLASLt's DGELU). The next layer's own dw2, dbias2
  // come from linear_backward with dinp = null. dw, dbias may be null.
  virtual void linear_gelu_backward(Act* dinp, float* dw, float* dbias, Act* dpre, const Act* dout2,
                                    const float* w2, const Act* inp, const Act* pre, const float* w, int N,
                                    int IC, int OC, int OC2, bool accumulate) = 0;

  // ---- LoRA adapters (model/lora.h): ops.h lora_forward / lora_backward ---------------------------
  // A, B and their gradients are fp32 in backend memory; u, du and xd are the caller's activations
  // ([N,r], [N,r], [N,IN]). A backend without them throws gpt::Error saying so.
  virtual void lora_forward(Act* out, Act* u, Act* xd, const Act* x, const float* A, const float* B, int N, int IN,
                            int r, int OUT, float scale, ops::Dropout drop);
  virtual void lora_backward(Act* dinp, float* dA, float* dB, Act* du, Act* xd, const Act* dout, const Act* x,
                             const Act* u, const float* A, const float* B, int N, int IN, int r, int OUT,
                             float scale, ops::Dropout drop);

  // ---- causal self-attention over qkv[B,T,3C]; band as in ops.h --------------------------------
  // What the forward keeps for the backward (`saved`) and the scratch both passes use are the
  // backend's business: the model asks for their sizes. saved is only written in training.
  virtual size_t attention_saved_bytes(int B, int T, int C, int H) const = 0;
  virtual size_t attention_scratch_bytes(int B, int T, int C, int H) const = 0;
  virtual void attention_forward(Act* out, void* saved, void* scratch, const Act* qkv, int B, int T, int C,
                                 int H, int band, ops::Dropout drop, bool training) = 0;
  // dqkv = gradient of qkv (overwritten). out is the forward's output.
  virtual void attention_backward(Act* dqkv, void* scratch, const Act* dout, const Act* qkv, const Act* out,
                                  const void* saved, int B, int T, int C, int H, int band,
                                  ops::Dropout drop) = 0;

  // ---- key/value caches (incremental decoding: model/gpt.h forward_cached) ---------------------
  // The cache type this backend keeps for a model whose matrices are `weights` (the CPU: fp32 for
  // fp32 weights, IEEE half for rounded ones; CUDA: its activation type).
  virtual KvType kv_cache_type(ops::WeightType weights) const = 0;
  // One layer's keys and values, [rows][H][n_ctx][C/H] each, of `type`: the keys and values of
  // qkv's N rows ([N, 3C]) go to their slots (CacheIndex).
  virtual void kv_cache_write(void* k_cache, void* v_cache, KvType type, const Act* qkv, const CacheIndex& at, int N,
                              int C, int H, int n_ctx) = 0;
  // out [N, C]: input i's query (qkv row i) attends to its cache row's keys j <= pos[i] (and
  // j > pos[i] - band when band > 0), its own included (kv_cache_write first). Several inputs may
  // share a row (a prefill chunk: consecutive positions). capture (may be null; host memory): one
  // head's probabilities, for the attention view (ops.h); a backend without it throws.
  // scratch: attention_cached_scratch_bytes(.) bytes for any N.
  virtual size_t attention_cached_scratch_bytes(int N, int C, int H, int n_ctx) const = 0;
  virtual void attention_cached(Act* out, void* scratch, const Act* qkv, const void* k_cache, const void* v_cache,
                                KvType type, const CacheIndex& at, int N, int C, int H, int n_ctx, int band,
                                const ops::AttentionCapture* capture) = 0;
  // out[i] = wte[ids[i]] + wpe[pos[i]] for i < N (ids and pos in backend memory): embeddings at any
  // positions.
  virtual void embedding_at(Act* out, const TokenId* ids, const int32_t* pos, const Weight& wte, const float* wpe,
                            int N, int C) = 0;

  // ---- residuals and dropout ---------------------------------------------------------------------
  virtual void residual_forward(Act* out, const Act* a, const Act* b, size_t n, ops::Dropout drop) = 0;
  virtual void dropout_forward(Act* x, size_t n, ops::Dropout drop) = 0;
  virtual void dropout_backward(Act* dinp, const Act* dout, size_t n, ops::Dropout drop) = 0;

  // ---- LM head and the loss ------------------------------------------------------------------------
  virtual void lm_head_forward(Act* logits, const Act* x, const Weight& wte, int N, int C, int V) = 0;
  // dx = dlogits @ wte (overwritten); dwte += dlogits^T @ x (dwte may be null).
  virtual void lm_head_backward(Act* dx, float* dwte, const Act* dlogits, const Act* x, const float* wte,
                                int N, int C, int V) = 0;
  // losses[n], lse[n] as ops.h; targets in backend memory. Returns the sum of scored losses to the host.
  virtual double cross_entropy_forward(float* losses, float* lse, const Act* logits, const int32_t* targets,
                                       int N, int V) = 0;
  // In place: logits[n] = scale * (softmax - onehot); ignored rows become 0.
  virtual void cross_entropy_backward(Act* logits, const float* lse, const int32_t* targets, int N, int V,
                                      float scale) = 0;

  // ---- optimizer -----------------------------------------------------------------------------------
  virtual void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                            const ops::AdamWStep& s) = 0;
  // Sum of squares of n fp32 values (accumulated in double), to the host.
  virtual double sum_squares(const float* x, size_t n) = 0;
};

// Backend memory with one owner: released when it goes.
class BackendBuffer {
 public:
  BackendBuffer() = default;
  BackendBuffer(Backend& be, size_t bytes) : be_(&be), p_(be.allocate(bytes)), bytes_(bytes) {}
  BackendBuffer(BackendBuffer&& o) noexcept
      : be_(std::exchange(o.be_, nullptr)),
        p_(std::exchange(o.p_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  BackendBuffer& operator=(BackendBuffer&& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  BackendBuffer(const BackendBuffer&) = delete;
  BackendBuffer& operator=(const BackendBuffer&) = delete;
  ~BackendBuffer() {
    if (p_) be_->release(p_);
  }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return p_ == nullptr; }

 private:
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// The CPU backend (one per process; it holds no state).
Backend& cpu_backend();
// The backend of a kind: one per process. Throws gpt::Error when this build has no CUDA backend or
// no GPU is present. local_rank (data-parallel runs): ranks sharing a machine take one GPU each
// (the first call picks it).
Backend& backend_for(DeviceKind kind, int local_rank = 0);
// The same by name: "cpu", "cuda" (bf16 mixed precision), "cuda-fp32" (fp32 activations and
// products, for conformance) or "cpu-staged" (tests).
Backend& backend_for(std::string_view device);
// Whether this build can make a CUDA backend (it may still find no GPU at run time).
bool cuda_backend_built();
// The GPU a rank uses on its machine: its local rank modulo the machine's GPU count (several
// ranks share a GPU only when there are more ranks than GPUs). -1 when there is no GPU.
inline int gpu_for_local_rank(int local_rank, int device_count) {
  if (device_count <= 0) return -1;
  return (local_rank < 0 ? 0 : local_rank) % device_count;
}

}  // namespace gpt
