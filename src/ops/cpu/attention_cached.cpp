// Attention over a key/value cache on the CPU (ops.h): what a decode step and a prefill chunk run.
// The keys and values of the pass go into the cache first, so the queries of a prefill see each
// other; then each (block of queries, head) is one task: a lone query makes one pass over its row's
// cached keys and values (attend_f32 / attend_f16: bandwidth-bound), a block of consecutive
// positions computes its scores with small sgemm calls, a masked softmax, and the weighted values
// with one more (compute-bound). The per-instruction-set kernels are in kernels.inc.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "ops/cpu/kernels.h"
#include "ops/ops.h"

namespace gpt::ops {
namespace {

constexpr int kBlock = 64;  // queries per attention block in a prefill

int first_key(int pos, int band) { return band > 0 && pos - band + 1 > 0 ? pos - band + 1 : 0; }

// Floats of one thread's work: a block's scores [kBlock, n_ctx], then keys and values as fp32
// [2, n_ctx, hs] (fp16 caches), and a row for the one-query kernels.
size_t per_thread(int n_ctx, int hs) {
  return static_cast<size_t>(kBlock) * n_ctx + 2 * static_cast<size_t>(n_ctx) * hs + hs;
}

size_t elem(const KvCacheView& kv) { return kv.f16 ? 2 : 4; }

// Where (cache row, head)'s keys or values start.
char* slot(void* base, const KvCacheView& kv, int row, int h, int H, int hs) {
  return static_cast<char*>(base) + (static_cast<size_t>(row) * H + h) * kv.n_ctx * hs * elem(kv);
}

}  // namespace

size_t attention_cached_scratch_floats(int n_ctx, int head_dim) {
  return static_cast<size_t>(num_threads()) * per_thread(n_ctx, head_dim);
}

void kv_cache_write(const KvCacheView& kv, const float* qkv, const int32_t* rows, const int32_t* pos, int N, int C,
                    int H) {
  const cpu::KernelTable& k = cpu::kernel_table();
  const int hs = C / H;
  const size_t row_bytes = hs * elem(kv);
  for (int i = 0; i < N; i++)
    for (int h = 0; h < H; h++) {
      const float* q = qkv + static_cast<size_t>(i) * 3 * C + h * hs;
      char* kd = slot(kv.k, kv, rows[i], h, H, hs) + static_cast<size_t>(pos[i]) * row_bytes;
      char* vd = slot(kv.v, kv, rows[i], h, H, hs) + static_cast<size_t>(pos[i]) * row_bytes;
      if (kv.f16) {
        k.to_f16(reinterpret_cast<uint16_t*>(kd), q + C, hs);
        k.to_f16(reinterpret_cast<uint16_t*>(vd), q + 2 * C, hs);
      } else {
        std::memcpy(kd, q + C, row_bytes);
        std::memcpy(vd, q + 2 * C, row_bytes);
      }
    }
}

void attention_cached(float* out, float* scratch, const float* qkv, const KvCacheView& kv, const int32_t* rows,
                      const int32_t* pos, int N, int C, int H, int band, const AttentionCapture* capture) {
  const cpu::KernelTable& kern = cpu::kernel_table();
  const int hs = C / H, C3 = 3 * C, T = kv.n_ctx;
  const size_t row_bytes = hs * elem(kv), work = per_thread(T, hs);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // Work items: blocks of up to kBlock consecutive positions of one row, times the heads. The list
  // lives on in the thread (no allocation once it has grown).
  thread_local std::vector<int> starts;
  if (starts.size() < static_cast<size_t>(N)) starts.resize(N);
  int nb = 0;
  for (int i = 0; i < N;) {
    int j = i + 1;
    while (j < N && j - i < kBlock && rows[j] == rows[i] && pos[j] == pos[j - 1] + 1) j++;
    starts[nb++] = i;
    i = j;
  }
  const int* blocks = starts.data();
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < nb * H; task++) {
    const int b = task / H, h = task % H;
    const int i0 = blocks[b], i1 = b + 1 < nb ? blocks[b + 1] : N;
    const int n = i1 - i0, r = rows[i0];
    const int p0 = pos[i0], p1 = pos[i1 - 1];
    const int k0 = first_key(p0, band), kn = p1 - k0 + 1;
    float* S = scratch + static_cast<size_t>(omp_get_thread_num()) * work;
    const float* Q = qkv + static_cast<size_t>(i0) * C3 + h * hs;
    const char* Kc = slot(kv.k, kv, r, h, H, hs) + static_cast<size_t>(k0) * row_bytes;
    const char* Vc = slot(kv.v, kv, r, h, H, hs) + static_cast<size_t>(k0) * row_bytes;
    float* O = out + static_cast<size_t>(i0) * C + h * hs;
    const bool capture_here =
        capture && capture->out && (h == capture->head || capture->head == AttentionCapture::kAllHeads);
    float* cap_out = !capture_here ? nullptr
                     : capture->head == AttentionCapture::kAllHeads
                         ? capture->out + static_cast<size_t>(h) * capture->T * capture->T
                         : capture->out;
    if (n == 1) {  // a decode step: one query, one pass over the row's keys and values
      if (kv.f16)
        kern.attend_f16(O, Q, reinterpret_cast<const uint16_t*>(Kc), reinterpret_cast<const uint16_t*>(Vc), kn, hs,
                        scale, S);
      else
        kern.attend_f32(O, Q, reinterpret_cast<const float*>(Kc), reinterpret_cast<const float*>(Vc), kn, hs, scale,
                        S);
      if (capture_here) {  // the probabilities again, on the side: the output above stays as it is
        float* P = cap_out + static_cast<size_t>(p0) * capture->T + k0;
        float* row = S + kn;
        for (int j = 0; j < kn; j++) {
          const float* kr = reinterpret_cast<const float*>(Kc + static_cast<size_t>(j) * row_bytes);
          if (kv.f16) {
            kern.from_f16(row, reinterpret_cast<const uint16_t*>(Kc + static_cast<size_t>(j) * row_bytes), hs);
            kr = row;
          }
          float d = 0.0f;
          for (int c = 0; c < hs; c++) d += Q[c] * kr[c];
          P[j] = scale * d;
        }
        kern.masked_softmax(P, kn, 0, kn - 1);
      }
      continue;
    }
    // A prefill block: scores S = scale Q K^T, masked softmax per query, out = S V, as matrix
    // products (fp16 keys and values converted to fp32 first).
    const float* K = reinterpret_cast<const float*>(Kc);
    const float* V = reinterpret_cast<const float*>(Vc);
    if (kv.f16) {
      float* Kf = S + static_cast<size_t>(kBlock) * T;
      float* Vf = Kf + static_cast<size_t>(T) * hs;
      kern.from_f16(Kf, reinterpret_cast<const uint16_t*>(Kc), static_cast<size_t>(kn) * hs);
      kern.from_f16(Vf, reinterpret_cast<const uint16_t*>(Vc), static_cast<size_t>(kn) * hs);
      K = Kf;
      V = Vf;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, kn, hs, scale, Q, C3, K, hs, 0.0f, S, kn);
    for (int q = 0; q < n; q++)
      kern.masked_softmax(S + static_cast<size_t>(q) * kn, kn, first_key(p0 + q, band) - k0, p0 + q - k0);
    if (capture_here)  // the probabilities, before they weight the values; keys outside [k0, p1] stay 0
      for (int q = 0; q < n; q++)
        std::memcpy(cap_out + static_cast<size_t>(p0 + q) * capture->T + k0, S + static_cast<size_t>(q) * kn,
                    static_cast<size_t>(kn) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, kn, 1.0f, S, kn, V, hs, 0.0f, O, C);
  }
}

}  // namespace gpt::ops
