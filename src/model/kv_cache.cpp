#include "model/kv_cache.h"

#include "core/error.h"
#include "model/gpt.h"

namespace gpt {

KvCache::KvCache(const GPT& model, int rows)
    : KvCache(model.backend(), model.config(), rows, model.backend().kv_cache_type(model.weight_type())) {}

KvCache::KvCache(Backend& be, const ModelConfig& cfg, int rows, KvType type)
    : be_(&be), cfg_(cfg), rows_(rows), type_(type) {
  if (rows < 1) fail("key/value cache: rows must be >= 1, got {}", rows);
  layer_bytes_ = static_cast<size_t>(rows) * cfg.n_ctx * cfg.n_embd * kv_size(type);
  buf_ = BackendBuffer(be, 2 * static_cast<size_t>(cfg.n_layer) * layer_bytes_);
}

void* KvCache::k(int l) const { return static_cast<char*>(buf_.get()) + static_cast<size_t>(l) * layer_bytes_; }
void* KvCache::v(int l) const { return k(cfg_.n_layer + l); }

// The filled positions of each (layer, head) of a row: 2 L H backend copies.
void KvCache::copy_row(int dst, int src, int n) {
  if (dst == src || n <= 0) return;
  const size_t hs = cfg_.head_dim(), es = kv_size(type_);
  const size_t head_bytes = static_cast<size_t>(cfg_.n_ctx) * hs * es, bytes = static_cast<size_t>(n) * hs * es;
  const int H = cfg_.n_head;
  for (int l = 0; l < 2 * cfg_.n_layer; l++) {  // the keys of every layer, then their values
    char* layer = static_cast<char*>(k(l));
    for (int h = 0; h < H; h++)
      be_->copy(layer + (static_cast<size_t>(dst) * H + h) * head_bytes,
                layer + (static_cast<size_t>(src) * H + h) * head_bytes, bytes);
  }
}

}  // namespace gpt
