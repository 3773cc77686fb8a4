#include "generate/decoder.h"

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "generate/attention_kernels.h"
#include "generate/row_map.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace gpt {
namespace {

constexpr int kBlock = 64;  // queries per attention block in a prefill

int first_key(int pos, int band) { return band > 0 && pos - band + 1 > 0 ? pos - band + 1 : 0; }

}  // namespace

Decoder::Decoder(const PackedModel& model, int max_batch, int chunk, KvCacheType kv)
    : model_(model),
      cfg_(model.config),
      max_batch_(max_batch),
      C_(cfg_.n_embd),
      H_(cfg_.n_head),
      hs_(cfg_.head_dim()),
      V_(cfg_.vocab_size) {
  cfg_.validate();
  if (max_batch < 1) fail("decoder: max_batch must be >= 1, got {}", max_batch);
  chunk_ = chunk > 0 ? std::min(chunk, cfg_.n_ctx) : std::min(cfg_.n_ctx, 512);
  wte_ = &model.matrix("wte.weight");
  head_ = &model.lm_head();
  wpe_ = model.vector("wpe.weight");
  if (!wpe_) fail("decoder: the model has no wpe.weight");
  if (wte_->out() != V_ || wte_->in() != C_ || head_->out() != V_ || head_->in() != C_)
    fail("decoder: embedding or LM head shape does not match the config");
  lnf_w_ = model.vector("ln_f.weight");
  lnf_b_ = model.vector("ln_f.bias");
  if (cfg_.final_ln() && !lnf_w_) fail("decoder: the model has no ln_f.weight");
  for (int l = 0; l < cfg_.n_layer; l++) {
    const std::string h = fmt::format("h.{}.", l);
    Layer L{};
    L.ln1_w = model.vector(h + "ln_1.weight");
    L.ln1_b = model.vector(h + "ln_1.bias");
    L.ln2_w = model.vector(h + "ln_2.weight");
    L.ln2_b = model.vector(h + "ln_2.bias");
    if (!L.ln1_w || !L.ln2_w) fail("decoder: layer {} has no LayerNorm weights", l);
    L.qkv = &model.matrix(h + "attn.c_attn.weight");
    L.proj = &model.matrix(h + "attn.c_proj.weight");
    L.fc = &model.matrix(h + "mlp.c_fc.weight");
    L.fc_proj = &model.matrix(h + "mlp.c_proj.weight");
    L.qkv_b = model.vector(h + "attn.c_attn.bias");
    L.proj_b = model.vector(h + "attn.c_proj.bias");
    L.fc_b = model.vector(h + "mlp.c_fc.bias");
    L.fc_proj_b = model.vector(h + "mlp.c_proj.bias");
    if (L.qkv->in() != C_ || L.qkv->out() != 3 * C_ || L.proj->in() != C_ || L.proj->out() != C_ ||
        L.fc->in() != C_ || L.fc->out() != 4 * C_ || L.fc_proj->in() != 4 * C_ || L.fc_proj->out() != C_)
      fail("decoder: a matrix of layer {} does not have the config's shape", l);
    layers_.push_back(L);
  }

  const size_t T = cfg_.n_ctx, B = max_batch;
  kv_f16_ = kv == KvCacheType::F16 || (kv == KvCacheType::Auto && model.type != ops::WeightType::F32);
  kv_elem_ = kv_f16_ ? 2 : 4;
  const size_t kv_elems = 2 * static_cast<size_t>(cfg_.n_layer) * B * T * C_;
  kv_.resize(kv_f16_ ? (kv_elems + 1) / 2 : kv_elems);
  tokens_.assign(B * T, 0);
  len_.assign(B, 0);
  phys_.resize(B);
  for (size_t r = 0; r < B; r++) phys_[r] = static_cast<int>(r);
  logits_.resize(2 * B * V_);  // per logical row, then the head's output of one step

  rows_cap_ = std::max(chunk_, max_batch);
  threads_ = std::max(1, num_threads());  // the ceiling: the team may shrink and grow
  const size_t R = rows_cap_;
  // per thread: a block's scores [kBlock, n_ctx], then keys and values as fp32 [2, n_ctx, hs]
  work_per_thread_ = static_cast<size_t>(kBlock) * T + 2 * T * static_cast<size_t>(hs_) + hs_;
  const size_t total =
      R * C_ * 6 + R * 3 * C_ + R * 4 * C_ * 2 + 2 * R + static_cast<size_t>(threads_) * work_per_thread_;
  acts_.resize(total);
  float* p = acts_.data();
  auto take = [&](size_t n) {
    float* r = p;
    p += n;
    return r;
  };
  x_ = take(R * C_);
  ln_ = take(R * C_);
  atty_ = take(R * C_);
  proj_ = take(R * C_);
  res_ = take(R * C_);
  head_in_ = take(R * C_);
  qkv_ = take(R * 3 * C_);
  fch_ = take(R * 4 * C_);
  gelu_ = take(R * 4 * C_);
  mean_ = take(R);
  rstd_ = take(R);
  work_ = take(static_cast<size_t>(threads_) * work_per_thread_);
  if (p != acts_.data() + total)
    fail("internal error: decoder plan uses {} floats of {}", p - acts_.data(), total);

  s_prow_.resize(R);
  s_pos_.resize(R);
  s_want_.resize(R);
  s_blocks_.resize(R);
  s_ids_.resize(R);
  s_old_.resize(B);
  s_new_.resize(B);
  s_used_.resize(B);
}

char* Decoder::k_cache(int l, int prow, int h) const {
  const size_t T = cfg_.n_ctx;
  return reinterpret_cast<char*>(const_cast<float*>(kv_.data())) +
         ((static_cast<size_t>(l) * max_batch_ + prow) * H_ + h) * T * static_cast<size_t>(hs_) * kv_elem_;
}
char* Decoder::v_cache(int l, int prow, int h) const {
  return k_cache(l, prow, h) + static_cast<size_t>(cfg_.n_layer) * max_batch_ * cfg_.n_ctx * C_ * kv_elem_;
}

const float* Decoder::logits(int row) const { return logits_.data() + static_cast<size_t>(row) * V_; }
float* Decoder::logits(int row) { return logits_.data() + static_cast<size_t>(row) * V_; }

std::span<const TokenId> Decoder::window(int row) const {
  const int p = phys_[row];
  return {tokens_.data() + static_cast<size_t>(p) * cfg_.n_ctx, static_cast<size_t>(len_[p])};
}

void Decoder::reset(int row) { len_[phys_[row]] = 0; }

// ---- the pass ------------------------------------------------------------------------------------

void Decoder::attention(int l, int n, const int* prow, const int* pos) {
  const gen::AttentionKernels& kern = gen::attention_kernels();
  const int band = cfg_.banded(l) ? cfg_.band : 0;
  const int C3 = 3 * C_, T = cfg_.n_ctx;
  const size_t hs = hs_, row_bytes = hs * kv_elem_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs_));
  // The new keys and values go into the cache first, so a prefill's queries see each other.
  for (int i = 0; i < n; i++)
    for (int h = 0; h < H_; h++) {
      const float* q = qkv_ + static_cast<size_t>(i) * C3 + h * hs_;
      char* kd = k_cache(l, prow[i], h) + static_cast<size_t>(pos[i]) * row_bytes;
      char* vd = v_cache(l, prow[i], h) + static_cast<size_t>(pos[i]) * row_bytes;
      if (kv_f16_) {
        kern.to_f16(reinterpret_cast<uint16_t*>(kd), q + C_, hs);
        kern.to_f16(reinterpret_cast<uint16_t*>(vd), q + 2 * C_, hs);
      } else {
        std::memcpy(kd, q + C_, row_bytes);
        std::memcpy(vd, q + 2 * C_, row_bytes);
      }
    }
  // Work items: blocks of up to kBlock consecutive positions of one row, times the heads.
  int* starts = s_blocks_.data();
  int nb = 0;
  for (int i = 0; i < n;) {
    int j = i + 1;
    while (j < n && j - i < kBlock && prow[j] == prow[i] && pos[j] == pos[j - 1] + 1) j++;
    starts[nb++] = i;
    i = j;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min(threads_, omp_get_max_threads()))
  for (int task = 0; task < nb * H_; task++) {
    const int b = task / H_, h = task % H_;
    const int i0 = starts[b], i1 = b + 1 < nb ? starts[b + 1] : n;
    const int rows = i1 - i0, r = prow[i0];
    const int p0 = pos[i0], p1 = pos[i1 - 1];
    const int k0 = first_key(p0, band), kn = p1 - k0 + 1;
    float* S = work_ + static_cast<size_t>(omp_get_thread_num()) * work_per_thread_;
    const float* Q = qkv_ + static_cast<size_t>(i0) * C3 + h * hs_;
    const char* Kc = k_cache(l, r, h) + static_cast<size_t>(k0) * row_bytes;
    const char* Vc = v_cache(l, r, h) + static_cast<size_t>(k0) * row_bytes;
    float* O = atty_ + static_cast<size_t>(i0) * C_ + h * hs_;
    const bool capture = cap_T_ > 0 && l == cap_layer_ && h == cap_head_;
    if (rows == 1) {  // a decode step: one query, one pass over the row's keys and values
      if (kv_f16_) {
        kern.attend_f16(O, Q, reinterpret_cast<const uint16_t*>(Kc), reinterpret_cast<const uint16_t*>(Vc),
                        kn, hs_, scale, S);
      } else {
        kern.attend_f32(O, Q, reinterpret_cast<const float*>(Kc), reinterpret_cast<const float*>(Vc), kn, hs_,
                        scale, S);
      }
      if (capture) {  // the probabilities again, on the side: the output above stays the uncaptured one
        float* P = cap_out_ + static_cast<size_t>(p0) * cap_T_ + k0;
        for (int j = 0; j < kn; j++) {
          float dot = 0.0f;
          if (kv_f16_) {
            const uint16_t* k = reinterpret_cast<const uint16_t*>(Kc) + static_cast<size_t>(j) * hs;
            for (int c = 0; c < hs_; c++) dot += Q[c] * f16_to_f32(k[c]);
          } else {
            const float* k = reinterpret_cast<const float*>(Kc) + static_cast<size_t>(j) * hs;
            for (int c = 0; c < hs_; c++) dot += Q[c] * k[c];
          }
          P[j] = scale * dot;
        }
        kern.masked_softmax(P, kn, 0, kn - 1);
      }
      continue;
    }
    // A prefill block: scores S = scale Q K^T, masked softmax per query, out = S V, as matrix
    // products (fp16 keys and values converted to fp32 first).
    const float* K = reinterpret_cast<const float*>(Kc);
    const float* V = reinterpret_cast<const float*>(Vc);
    if (kv_f16_) {
      float* Kf = S + static_cast<size_t>(kBlock) * T;
      float* Vf = Kf + static_cast<size_t>(T) * hs;
      kern.from_f16(Kf, reinterpret_cast<const uint16_t*>(Kc), static_cast<size_t>(kn) * hs);
      kern.from_f16(Vf, reinterpret_cast<const uint16_t*>(Vc), static_cast<size_t>(kn) * hs);
      K = Kf;
      V = Vf;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kn, hs_, scale, Q, C3, K, hs_, 0.0f, S, kn);
    for (int q = 0; q < rows; q++)
      kern.masked_softmax(S + static_cast<size_t>(q) * kn, kn, first_key(p0 + q, band) - k0, p0 + q - k0);
    if (capture)  // the probabilities, before they weight the values; keys outside [k0, p1] stay 0
      for (int q = 0; q < rows; q++)
        std::memcpy(cap_out_ + static_cast<size_t>(p0 + q) * cap_T_ + k0, S + static_cast<size_t>(q) * kn,
                    static_cast<size_t>(kn) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs_, kn, 1.0f, S, kn, V, hs_, 0.0f, O, C_);
  }
}

void Decoder::forward(int n, const int* prow, const int* pos, const TokenId* ids, std::span<const int> want,
                      float* out) {
  const size_t N = static_cast<size_t>(n), C = C_;
  const float eps = cfg_.ln_eps;
  const bool pre = cfg_.ln == LnPlacement::Pre;
  const ops::Dropout none{};
  // token + position embeddings
  for (int i = 0; i < n; i++) {
    float* xi = x_ + i * C;
    wte_->dequantize_row(static_cast<int>(ids[i]), xi);
    const float* pe = wpe_ + static_cast<size_t>(pos[i]) * C;
    for (size_t c = 0; c < C; c++) xi[c] += pe[c];
  }
  for (int l = 0; l < cfg_.n_layer; l++) {
    const Layer& W = layers_[l];
    const float* attn_in = x_;
    if (pre) {
      ops::layernorm_forward(ln_, mean_, rstd_, x_, W.ln1_w, W.ln1_b, n, C_, eps);
      attn_in = ln_;
    }
    ops::packed_linear(qkv_, attn_in, *W.qkv, W.qkv_b, n);
    attention(l, n, prow, pos);
    ops::packed_linear(proj_, atty_, *W.proj, W.proj_b, n);
    ops::residual_forward(res_, x_, proj_, N * C, none);  // res_ = x + attn
    float* mlp_in;
    if (pre) {
      ops::layernorm_forward(ln_, mean_, rstd_, res_, W.ln2_w, W.ln2_b, n, C_, eps);
      mlp_in = ln_;
    } else {
      ops::layernorm_forward(ln_, mean_, rstd_, res_, W.ln1_w, W.ln1_b, n, C_, eps);
      mlp_in = ln_;
    }
    ops::packed_linear(fch_, mlp_in, *W.fc, W.fc_b, n);
    ops::gelu_forward(gelu_, fch_, N * 4 * C);
    ops::packed_linear(proj_, gelu_, *W.fc_proj, W.fc_proj_b, n);
    if (pre) {
      ops::residual_forward(x_, res_, proj_, N * C, none);  // x = res + mlp
    } else {
      ops::residual_forward(res_, ln_, proj_, N * C, none);  // res = ln_1(...) + mlp
      ops::layernorm_forward(x_, mean_, rstd_, res_, W.ln2_w, W.ln2_b, n, C_, eps);
    }
  }
  if (want.empty()) return;
  // The head, for the wanted positions only.
  const int k = static_cast<int>(want.size());
  for (int j = 0; j < k; j++)
    std::memcpy(ln_ + j * C, x_ + static_cast<size_t>(want[j]) * C, C * sizeof(float));
  const float* head_in = ln_;
  if (cfg_.final_ln()) {
    ops::layernorm_forward(head_in_, mean_, rstd_, ln_, lnf_w_, lnf_b_, k, C_, eps);
    head_in = head_in_;
  }
  ops::packed_linear(out, head_in, *head_, nullptr, k);
}

// ---- prefill and step -----------------------------------------------------------------------------

void Decoder::run_prefill(int prow, std::span<const TokenId> tokens, float* last_logits, float* all_logits) {
  const int T = static_cast<int>(tokens.size());
  TokenId* row_tokens = tokens_.data() + static_cast<size_t>(prow) * cfg_.n_ctx;
  // memmove: in a rebuild, tokens is the row's own window shifted by one.
  std::memmove(row_tokens, tokens.data(), tokens.size() * sizeof(TokenId));
  len_[prow] = 0;
  for (int t0 = 0; t0 < T; t0 += chunk_) {
    adapt_threads();  // a step boundary (core/parallel.h)
    const int n = std::min(chunk_, T - t0);
    for (int i = 0; i < n; i++) {
      s_prow_[i] = prow;
      s_pos_[i] = t0 + i;
    }
    // The wanted positions: all of the chunk, the very last token, or none.
    int nw = 0;
    float* out = nullptr;
    if (all_logits) {
      for (int i = 0; i < n; i++) s_want_[nw++] = i;
      out = all_logits + static_cast<size_t>(t0) * V_;
    } else if (last_logits && t0 + n == T) {
      s_want_[nw++] = n - 1;
      out = last_logits;
    }
    forward(n, s_prow_.data(), s_pos_.data(), row_tokens + t0, std::span<const int>(s_want_.data(), nw), out);
    len_[prow] = t0 + n;
  }
  if (all_logits && last_logits)
    std::memcpy(last_logits, all_logits + static_cast<size_t>(T - 1) * V_, V_ * sizeof(float));
}

void Decoder::prefill(int row, std::span<const TokenId> tokens, float* all_logits) {
  tokens = prefill_window(row, tokens, max_batch_, cfg_.n_ctx, V_);
  if (cap_out_) {
    cap_T_ = static_cast<int>(tokens.size());
    std::fill(cap_out_, cap_out_ + static_cast<size_t>(cap_T_) * cap_T_, 0.0f);
  }
  try {
    run_prefill(phys_[row], tokens, logits(row), all_logits);
  } catch (...) {
    cap_out_ = nullptr;
    cap_T_ = 0;
    throw;
  }
  cap_out_ = nullptr;  // armed for one prefill only (a step or a rebuild never captures)
  cap_T_ = 0;
}

void Decoder::capture_attention(int layer, int head, float* out) {
  if (layer < 0 || layer >= cfg_.n_layer)
    fail("decoder: layer {} is out of range (0..{})", layer, cfg_.n_layer - 1);
  if (head < 0 || head >= H_) fail("decoder: head {} is out of range (0..{})", head, H_ - 1);
  if (!out) fail("decoder: capture_attention needs an output buffer");
  cap_layer_ = layer;
  cap_head_ = head;
  cap_out_ = out;
}

void Decoder::step(std::span<const int> rows, std::span<const TokenId> tokens) {
  check_step(rows, tokens, max_batch_, V_, phys_, len_, s_used_);
  const int n = static_cast<int>(rows.size());
  if (n == 0) return;
  adapt_threads();  // a step boundary (core/parallel.h)
  // Full rows slide first (see the header).
  rebuilds_ +=
      slide_full_rows(rows, phys_, len_, tokens_, cfg_.n_ctx,
                      [&](int p, std::span<const TokenId> w) { run_prefill(p, w, nullptr, nullptr); });
  for (int i = 0; i < n; i++) {
    const int p = phys_[rows[i]];
    s_prow_[i] = p;
    s_pos_[i] = len_[p];
    s_ids_[i] = tokens[i];
    s_want_[i] = i;
  }
  float* out = logits_.data() + static_cast<size_t>(max_batch_) * V_;  // the head's output area
  forward(n, s_prow_.data(), s_pos_.data(), s_ids_.data(), std::span<const int>(s_want_.data(), n), out);
  for (int i = 0; i < n; i++) {
    const int p = s_prow_[i];
    tokens_[static_cast<size_t>(p) * cfg_.n_ctx + len_[p]] = tokens[i];
    len_[p]++;
    std::memcpy(logits(rows[i]), out + static_cast<size_t>(i) * V_, V_ * sizeof(float));
  }
}

// ---- rows ------------------------------------------------------------------------------------------

void Decoder::copy_phys(int dst, int src) {
  if (dst == src) return;
  const size_t len = len_[src], T = cfg_.n_ctx;
  for (int l = 0; l < cfg_.n_layer; l++)
    for (int h = 0; h < H_; h++) {
      std::memcpy(k_cache(l, dst, h), k_cache(l, src, h), len * hs_ * kv_elem_);
      std::memcpy(v_cache(l, dst, h), v_cache(l, src, h), len * hs_ * kv_elem_);
    }
  std::memcpy(tokens_.data() + dst * T, tokens_.data() + src * T, len * sizeof(TokenId));
  len_[dst] = len_[src];
}

void Decoder::copy_row(int dst, int src) {
  if (dst < 0 || src < 0 || dst >= max_batch_ || src >= max_batch_)
    fail("decoder: copy_row({}, {}) is out of range (max batch {})", dst, src, max_batch_);
  if (dst == src) return;
  copy_phys(phys_[dst], phys_[src]);
  std::memcpy(logits(dst), logits(src), V_ * sizeof(float));
}

void Decoder::reorder(std::span<const int> parents) {
  reorder_rows(
      phys_, parents, s_old_, s_new_, s_used_, [&](int dst, int src) { copy_phys(dst, src); },
      [&](int p) { len_[p] = 0; });
}

}  // namespace gpt
