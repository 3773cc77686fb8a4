#include "generate/device_decoder.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "generate/row_map.h"

namespace gpt {
namespace {

const Act* offset(const Act* p, size_t rows, size_t C, size_t es) {
  return static_cast<const char*>(p) + rows * C * es;
}

}  // namespace

DeviceDecoder::DeviceDecoder(GPT& model, int max_batch)
    : model_(model),
      be_(model.backend()),
      cfg_(model.config()),
      max_batch_(max_batch),
      C_(cfg_.n_embd),
      H_(cfg_.n_head),
      V_(cfg_.vocab_size),
      es_(act_size(be_.act_type())) {
  // The decoder reads the base weights: attached adapters would silently be lost.
  if (model.lora())
    fail("the model has LoRA adapters attached: merge them first (merge_lora, gpt lora merge)");
  cfg_.validate();
  if (max_batch < 1) fail("decoder: max_batch must be >= 1, got {}", max_batch);
  model_.upload_parameters();
  w_ = bind_tensors(cfg_, model_.layout(), model_.device_params());

  const size_t T = cfg_.n_ctx, B = max_batch, C = C_;
  kv_ = BackendBuffer(be_, 2 * static_cast<size_t>(cfg_.n_layer) * B * T * C * es_);
  rows_cap_ = std::max(cfg_.n_ctx, max_batch);
  head_rows_ = std::min(rows_cap_, std::max(max_batch, 64));  // rows of logits one head call makes
  const size_t R = rows_cap_;
  const size_t scratch_bytes = std::max(be_.attention_scratch_bytes(1, cfg_.n_ctx, C_, H_),
                                        be_.attention_decode_scratch_bytes(max_batch, C_, H_, cfg_.n_ctx));
  // Two passes over the same carving, as GPT::plan: the first counts, the second hands out.
  char* base = nullptr;
  size_t used = 0;
  auto take = [&](size_t bytes) -> void* {
    void* r = base ? base + used : nullptr;
    used += (bytes + 255) / 256 * 256;
    return r;
  };
  auto carve = [&] {
    used = 0;
    x_ = take(R * C * es_);
    ln1_ = take(R * C * es_);
    qkv_ = take(R * 3 * C * es_);
    atty_ = take(R * C * es_);
    proj_ = take(R * C * es_);
    res2_ = take(R * C * es_);
    ln2_ = take(R * C * es_);
    fch_ = take(R * 4 * C * es_);
    fch_gelu_ = take(R * 4 * C * es_);
    res3_ = take(R * C * es_);
    lnf_ = take(R * C * es_);
    logits_dev_ = take(static_cast<size_t>(head_rows_) * V_ * es_);
    mean_ = static_cast<float*>(take(R * sizeof(float)));
    rstd_ = static_cast<float*>(take(R * sizeof(float)));
    scratch_ = take(scratch_bytes);
    io_ = static_cast<int32_t*>(take(3 * R * sizeof(int32_t)));
  };
  carve();
  acts_ = BackendBuffer(be_, used);
  base = static_cast<char*>(acts_.get());
  carve();

  tokens_.assign(B * T, 0);
  len_.assign(B, 0);
  phys_.resize(B);
  for (size_t r = 0; r < B; r++) phys_[r] = static_cast<int>(r);
  logits_.assign(B * V_, 0.0f);
  step_logits_.assign(B * V_, 0.0f);
  s_io_.resize(3 * R);
  s_prow_.resize(R);
  s_pos_.resize(R);
  s_ids_.resize(R);
  s_old_.resize(B);
  s_new_.resize(B);
  s_used_.resize(B);
}

Act* DeviceDecoder::k_cache(int l) const {
  const size_t layer = static_cast<size_t>(max_batch_) * cfg_.n_ctx * C_ * es_;
  return static_cast<char*>(kv_.get()) + l * layer;
}
Act* DeviceDecoder::v_cache(int l) const { return k_cache(cfg_.n_layer + l); }

const float* DeviceDecoder::logits(int row) const { return logits_.data() + static_cast<size_t>(row) * V_; }
float* DeviceDecoder::logits(int row) { return logits_.data() + static_cast<size_t>(row) * V_; }

std::span<const TokenId> DeviceDecoder::window(int row) const {
  const int p = phys_[row];
  return {tokens_.data() + static_cast<size_t>(p) * cfg_.n_ctx, static_cast<size_t>(len_[p])};
}

void DeviceDecoder::reset(int row) { len_[phys_[row]] = 0; }

// ---- the pass: GPT::forward's ops (model/gpt.cpp), in the same order ---------------------------------

void DeviceDecoder::forward(int n, const int* prow, const int* pos, const TokenId* ids, bool prefill,
                            int want0, float* host_out) {
  Backend& be = be_;
  const int C = C_, H = H_, V = V_, L = cfg_.n_layer, n_ctx = cfg_.n_ctx;
  const float eps = cfg_.ln_eps;
  const bool pre = cfg_.ln == LnPlacement::Pre;
  const ops::Dropout none{};
  adapt_threads();  // a step boundary (core/parallel.h)
  // One upload per pass: ids, positions, cache rows.
  std::memcpy(s_io_.data(), ids, n * sizeof(int32_t));
  std::copy(pos, pos + n, s_io_.begin() + n);
  std::copy(prow, prow + n, s_io_.begin() + 2 * n);
  be.to_device(io_, s_io_.data(), 3 * static_cast<size_t>(n) * sizeof(int32_t));
  const auto* ids_d = reinterpret_cast<const TokenId*>(io_);
  const int32_t* pos_d = io_ + n;
  const int32_t* rows_d = io_ + 2 * n;

  be.embedding_at(x_, ids_d, pos_d, w_.wte, w_.wpe, n, C);
  const Act* x = x_;
  if (pre && L > 0)
    be.layernorm_forward(ln1_, mean_, rstd_, x, w_.layers[0].ln1_w, w_.layers[0].ln1_b, n, C, eps);
  for (int l = 0; l < L; l++) {
    const LayerTensors& W = w_.layers[l];
    const int band = cfg_.banded(l) ? cfg_.band : 0;
    be.linear_forward(qkv_, pre ? ln1_ : x, W.qkv_w, W.qkv_b, n, C, 3 * C);
    be.kv_cache_write(k_cache(l), v_cache(l), qkv_, rows_d, pos_d, n, C, H, n_ctx);
    if (prefill)  // positions 0..n-1 of one row: causal attention over the pass itself
      be.attention_forward(atty_, nullptr, scratch_, qkv_, 1, n, C, H, band, none, false);
    else
      be.attention_decode(atty_, scratch_, qkv_, k_cache(l), v_cache(l), rows_d, pos_d, n, C, H, n_ctx, band);
    be.linear_forward(proj_, atty_, W.attn_proj_w, W.attn_proj_b, n, C, C);
    const Act* mlp_in = pre ? ln2_ : ln1_;
    if (pre)
      be.residual_layernorm_forward(res2_, ln2_, mean_, rstd_, x, proj_, none, W.ln2_w, W.ln2_b, n, C, eps);
    else
      be.residual_layernorm_forward(res2_, ln1_, mean_, rstd_, x, proj_, none, W.ln1_w, W.ln1_b, n, C, eps);
    be.linear_gelu_forward(fch_gelu_, fch_, mlp_in, W.fc_w, W.fc_b, n, C, 4 * C);
    be.linear_forward(proj_, fch_gelu_, W.fc_proj_w, W.fc_proj_b, n, 4 * C, C);
    if (pre) {  // the next block's ln_1, or ln_f after the last block
      const bool last = l + 1 == L;
      be.residual_layernorm_forward(res3_, last ? lnf_ : ln1_, mean_, rstd_, res2_, proj_, none,
                                    last ? w_.lnf_w : w_.layers[l + 1].ln1_w,
                                    last ? w_.lnf_b : w_.layers[l + 1].ln1_b, n, C, eps);
      x = res3_;
    } else {
      be.residual_layernorm_forward(res3_, ln2_, mean_, rstd_, ln1_, proj_, none, W.ln2_w, W.ln2_b, n, C,
                                    eps);
      x = ln2_;
    }
  }
  if (pre && L == 0) be.layernorm_forward(lnf_, mean_, rstd_, x, w_.lnf_w, w_.lnf_b, n, C, eps);
  if (!host_out) return;
  // The head for the wanted inputs only, head_rows_ at a time; the logits go to the host.
  const Act* head_in = pre ? lnf_ : x;
  for (int i0 = want0; i0 < n; i0 += head_rows_) {
    const int k = std::min(head_rows_, n - i0);
    be.lm_head_forward(logits_dev_, offset(head_in, i0, C, es_), w_.lm_head, k, C, V);
    be.act_to_host_f32(host_out + static_cast<size_t>(i0 - want0) * V, logits_dev_,
                       static_cast<size_t>(k) * V);
  }
}

// ---- prefill and step (the policy of Decoder, decoder.cpp) ---------------------------------------------

void DeviceDecoder::run_prefill(int prow, std::span<const TokenId> tokens, float* last_logits,
                                float* all_logits) {
  const int T = static_cast<int>(tokens.size());
  TokenId* row_tokens = tokens_.data() + static_cast<size_t>(prow) * cfg_.n_ctx;
  // memmove: in a rebuild, tokens is the row's own window shifted by one.
  std::memmove(row_tokens, tokens.data(), tokens.size() * sizeof(TokenId));
  len_[prow] = 0;
  for (int i = 0; i < T; i++) {
    s_prow_[i] = prow;
    s_pos_[i] = i;
  }
  if (all_logits) {
    forward(T, s_prow_.data(), s_pos_.data(), row_tokens, true, 0, all_logits);
    if (last_logits)
      std::memcpy(last_logits, all_logits + static_cast<size_t>(T - 1) * V_, V_ * sizeof(float));
  } else {
    forward(T, s_prow_.data(), s_pos_.data(), row_tokens, true, last_logits ? T - 1 : T, last_logits);
  }
  len_[prow] = T;
}

void DeviceDecoder::prefill(int row, std::span<const TokenId> tokens, float* all_logits) {
  tokens = prefill_window(row, tokens, max_batch_, cfg_.n_ctx, V_);
  run_prefill(phys_[row], tokens, logits(row), all_logits);
}

void DeviceDecoder::step(std::span<const int> rows, std::span<const TokenId> tokens) {
  check_step(rows, tokens, max_batch_, V_, phys_, len_, s_used_);
  const int n = static_cast<int>(rows.size());
  if (n == 0) return;
  // Full rows slide first.
  rebuilds_ +=
      slide_full_rows(rows, phys_, len_, tokens_, cfg_.n_ctx,
                      [&](int p, std::span<const TokenId> w) { run_prefill(p, w, nullptr, nullptr); });
  for (int i = 0; i < n; i++) {
    const int p = phys_[rows[i]];
    s_prow_[i] = p;
    s_pos_[i] = len_[p];
    s_ids_[i] = tokens[i];
  }
  forward(n, s_prow_.data(), s_pos_.data(), s_ids_.data(), false, 0, step_logits_.data());
  for (int i = 0; i < n; i++) {
    const int p = s_prow_[i];
    tokens_[static_cast<size_t>(p) * cfg_.n_ctx + len_[p]] = tokens[i];
    len_[p]++;
    std::memcpy(logits(rows[i]), step_logits_.data() + static_cast<size_t>(i) * V_, V_ * sizeof(float));
  }
}

// ---- rows ------------------------------------------------------------------------------------------

// The filled positions of each (layer, head) of a slot: 2 L H backend copies.
void DeviceDecoder::copy_phys(int dst, int src) {
  if (dst == src) return;
  const size_t len = len_[src], T = cfg_.n_ctx, hs = cfg_.head_dim();
  const size_t head_bytes = T * hs * es_, bytes = len * hs * es_;
  for (int l = 0; l < 2 * cfg_.n_layer; l++) {  // the keys of every layer, then their values
    char* layer = static_cast<char*>(k_cache(l));
    for (int h = 0; h < H_; h++)
      be_.copy(layer + (static_cast<size_t>(dst) * H_ + h) * head_bytes,
               layer + (static_cast<size_t>(src) * H_ + h) * head_bytes, bytes);
  }
  std::memcpy(tokens_.data() + dst * T, tokens_.data() + src * T, len * sizeof(TokenId));
  len_[dst] = len_[src];
}

void DeviceDecoder::copy_row(int dst, int src) {
  if (dst < 0 || src < 0 || dst >= max_batch_ || src >= max_batch_)
    fail("decoder: copy_row({}, {}) is out of range (max batch {})", dst, src, max_batch_);
  if (dst == src) return;
  copy_phys(phys_[dst], phys_[src]);
  std::memcpy(logits(dst), logits(src), V_ * sizeof(float));
}

void DeviceDecoder::reorder(std::span<const int> parents) {
  reorder_rows(
      phys_, parents, s_old_, s_new_, s_used_, [&](int dst, int src) { copy_phys(dst, src); },
      [&](int p) { len_[p] = 0; });
}

}  // namespace gpt
