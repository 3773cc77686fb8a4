#include "generate/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "generate/decoder.h"
#include "generate/utf8_stream.h"
#include "train/plot.h"

namespace gpt {

namespace {

StreamSummary summarise(const float* x, int T, int C) {
  StreamSummary s;
  for (int t = 0; t < T; t++) {
    const float* r = x + static_cast<size_t>(t) * C;
    double sum = 0, sq = 0;
    for (int c = 0; c < C; c++) sum += r[c], sq += static_cast<double>(r[c]) * r[c];
    const double mean = sum / C;
    double var = 0;
    for (int c = 0; c < C; c++) var += (r[c] - mean) * (r[c] - mean);
    const StreamStats st{mean, std::sqrt(var / C), std::sqrt(sq)};
    s.avg.mean += st.mean / T;
    s.avg.std += st.std / T;
    s.avg.norm += st.norm / T;
    if (t == T - 1) s.last = st;
  }
  return s;
}

// The top k of softmax(logits) (V of them), most likely first, ties by the smaller id.
std::vector<LensToken> top_tokens(const float* logits, int V, int k) {
  const float mx = *std::max_element(logits, logits + V);
  double z = 0;
  for (int v = 0; v < V; v++) z += std::exp(static_cast<double>(logits[v]) - mx);
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
  std::vector<LensToken> top(k);
  for (int i = 0; i < k; i++)
    top[i] = {static_cast<TokenId>(order[i]), std::exp(static_cast<double>(logits[order[i]]) - mx) / z};
  return top;
}

// Collects an inspection from one pass that holds the whole prompt (input i = position i).
class Inspector : public ForwardObserver {
 public:
  Inspector(Inspection& r, int T) : r_(r), T_(T), H_(r.config.n_head) {
    probs_.resize(static_cast<size_t>(H_) * T * T);
  }
  const ops::AttentionCapture* attention_capture(int layer) override {
    (void)layer;  // every layer, one at a time, into the same buffer: block_states reads it first
    std::fill(probs_.begin(), probs_.end(), 0.0f);
    cap_ = {ops::AttentionCapture::kAllHeads, probs_.data(), T_};
    return &cap_;
  }
  bool wants_states() const override { return true; }
  void block_states(const BlockStates& s) override {
    LayerInspection& L = r_.layers[s.layer];
    for (int k = 0; k < 2; k++) {
      L.ln_in[k] = summarise(s.ln_in[k], s.n, s.C);
      L.ln_out[k] = summarise(s.ln_out[k], s.n, s.C);
    }
    L.out = summarise(s.out, s.n, s.C);
    L.entropy.assign(H_, 0.0);
    for (int h = 0; h < H_; h++)
      for (int q = 0; q < T_; q++) {
        const float* row = probs_.data() + (static_cast<size_t>(h) * T_ + q) * T_;
        double e = 0;
        for (int j = 0; j <= q; j++)
          if (row[j] > 0) e -= row[j] * std::log(static_cast<double>(row[j]));
        L.entropy[h] += e / T_;
      }
  }
  int lens_from(int n) const override { return std::min(r_.lens_from, n); }
  void lens_logits(int layer, int i0, int k, const float* logits) override {
    const int V = r_.config.vocab_size;
    auto& lens = r_.layers[layer].lens;
    for (int i = 0; i < k; i++) lens.push_back(top_tokens(logits + static_cast<size_t>(i) * V, V, r_.top_k));
    (void)i0;  // the positions arrive in order
  }

 private:
  Inspection& r_;
  int T_, H_;
  std::vector<float> probs_;  // [H, T, T], one layer at a time
  ops::AttentionCapture cap_;
};

const char* ln_name(const ModelConfig& c) { return c.ln == LnPlacement::Pre ? "pre" : "post"; }

nlohmann::json stats_json(const StreamStats& s) {
  return {{"mean", s.mean}, {"std", s.std}, {"norm", s.norm}};
}
nlohmann::json summary_json(const StreamSummary& s) {
  return {{"avg", stats_json(s.avg)}, {"last", stats_json(s.last)}};
}

// A token as a quoted, escaped string for the tables: spaces and newlines stay visible.
std::string quoted(const Tokenizer* tok, TokenId id) {
  return nlohmann::json(inspect_token_text(tok, id)).dump();
}

// A probability in 5 characters or so: 0.734, or 2.1e-05 below 0.001.
std::string prob_text(double p) {
  return p >= 0.001 || p == 0 ? fmt::format("{:.3f}", p) : fmt::format("{:.1e}", p);
}

}  // namespace

std::string inspect_token_text(const Tokenizer* tok, TokenId id) {
  if (tok && id < tok->vocab_size()) return sanitize_utf8(tok->token_bytes(id));
  return fmt::format("#{}", id);
}

Inspection inspect(GPT& model, std::span<const TokenId> ids, const InspectOptions& opt) {
  const ModelConfig& cfg = model.config();
  const int T = static_cast<int>(std::min<size_t>(ids.size(), 1u << 30));
  if (T < 1) fail("inspect: the prompt is empty (it needs at least one token)");
  if (T > cfg.n_ctx)
    fail("inspect: the prompt has {} tokens, more than the model's context of {}", T, cfg.n_ctx);
  if (opt.top_k < 1 || opt.top_k > cfg.vocab_size)
    fail("inspect: top-k must be between 1 and the vocabulary size {}, got {}", cfg.vocab_size, opt.top_k);
  for (TokenId id : ids)
    if (id >= static_cast<TokenId>(cfg.vocab_size))
      fail("token id {} is out of range for a vocabulary of {}", id, cfg.vocab_size);
  Inspection r;
  r.ids.assign(ids.begin(), ids.end());
  r.config = cfg;
  r.top_k = opt.top_k;
  r.lens_from = opt.all_positions ? 0 : T - 1;
  r.layers.resize(cfg.n_layer);
  for (int l = 0; l < cfg.n_layer; l++) {
    r.layers[l].layer = l;
    r.layers[l].banded = cfg.banded(l);
    for (int q = 0; q < T; q++)  // query q sees q + 1 keys, or the last `band` of them
      r.layers[l].uniform_entropy +=
          std::log(static_cast<double>(cfg.banded(l) ? std::min(q + 1, cfg.band) : q + 1)) / T;
  }
  // One row whose chunk is the whole prompt: one pass, input i at position i.
  Decoder dec(model, 1, T);
  Inspector obs(r, T);
  dec.observe(&obs);
  dec.prefill(0, ids);
  return r;
}

nlohmann::json inspection_json(const Inspection& r, const Tokenizer* tok) {
  nlohmann::json tokens = nlohmann::json::array(), layers = nlohmann::json::array();
  for (TokenId id : r.ids) tokens.push_back(inspect_token_text(tok, id));
  for (const LayerInspection& L : r.layers) {
    nlohmann::json lens = nlohmann::json::array();
    for (size_t i = 0; i < L.lens.size(); i++) {
      nlohmann::json top = nlohmann::json::array();
      for (const LensToken& t : L.lens[i])
        top.push_back({{"id", t.id}, {"token", inspect_token_text(tok, t.id)}, {"prob", t.prob}});
      lens.push_back({{"position", r.lens_from + static_cast<int>(i)}, {"top", std::move(top)}});
    }
    layers.push_back({{"layer", L.layer},
                      {"banded", L.banded},
                      {"ln_1", {{"in", summary_json(L.ln_in[0])}, {"out", summary_json(L.ln_out[0])}}},
                      {"ln_2", {{"in", summary_json(L.ln_in[1])}, {"out", summary_json(L.ln_out[1])}}},
                      {"out", summary_json(L.out)},
                      {"entropy", L.entropy},
                      {"uniform_entropy", L.uniform_entropy},
                      {"lens", std::move(lens)}});
  }
  return {{"tokens", std::move(tokens)}, {"ids", r.ids},
          {"n_layer", r.config.n_layer}, {"n_head", r.config.n_head},
          {"ln", ln_name(r.config)},     {"top_k", r.top_k},
          {"lens_from", r.lens_from},    {"layers", std::move(layers)}};
}

std::string inspection_text(const Inspection& r, const Tokenizer* tok) {
  const ModelConfig& c = r.config;
  const int T = static_cast<int>(r.ids.size());
  std::string s =
      fmt::format("{} layers, {} heads, {}-LN; {} prompt tokens:", c.n_layer, c.n_head, ln_name(c), T);
  for (int t = 0; t < T; t++) s += fmt::format(" {}:{}", t, quoted(tok, r.ids[t]));
  s += fmt::format(
      "\n\nresidual stream around the LayerNorms: mean / std / L2 norm over the {} channels, averaged over "
      "the {} positions\n",
      c.n_embd, T);
  s += fmt::format("{:>5}  {:>24}  {:>24}  {:>24}  {:>24}\n", "layer", "ln_1 in", "ln_1 out", "ln_2 in",
                   "ln_2 out");
  auto cell = [](const StreamSummary& x) {
    return fmt::format("{:>8.3f} {:>7.3f} {:>7.2f}", x.avg.mean, x.avg.std, x.avg.norm);
  };
  for (const LayerInspection& L : r.layers)
    s += fmt::format("{:>5}  {}  {}  {}  {}\n", L.layer, cell(L.ln_in[0]), cell(L.ln_out[0]),
                     cell(L.ln_in[1]), cell(L.ln_out[1]));
  s += fmt::format(
      "\nattention entropy per head, nats, averaged over the {} queries (uniform: every allowed key "
      "alike)\n",
      T);
  s += fmt::format("{:>5}", "layer");
  for (int h = 0; h < c.n_head; h++) s += fmt::format(" {:>6}", fmt::format("h{}", h));
  s += fmt::format("  {:>7}\n", "uniform");
  for (const LayerInspection& L : r.layers) {
    s += fmt::format("{:>5}", L.layer);
    for (double e : L.entropy) s += fmt::format(" {:>6.3f}", e);
    s += fmt::format("  {:>7.3f}{}\n", L.uniform_entropy, L.banded ? "  (banded)" : "");
  }
  for (int t = r.lens_from; t < T; t++) {
    s += fmt::format("\nlogit lens at position {} ({}): top {} next tokens of each layer's output\n", t,
                     quoted(tok, r.ids[t]), r.top_k);
    for (const LayerInspection& L : r.layers) {
      s += fmt::format("{:>5}", L.layer);
      for (const LensToken& x : L.lens[t - r.lens_from])
        s += fmt::format("  {} {}", quoted(tok, x.id), prob_text(x.prob));
      s += "\n";
    }
  }
  return s;
}

void write_inspection_svg(const std::string& path, const Inspection& r, const Tokenizer* tok) {
  HeatMap m;
  const int T = static_cast<int>(r.ids.size());
  m.title = "Logit lens: the top next token of each layer's output";
  m.x_title = "position (input token)";
  m.y_title = "layer";
  m.scale_label = "probability of the top token";
  for (int t = r.lens_from; t < T; t++)
    m.col_labels.push_back(fmt::format("{} {}", t, quoted(tok, r.ids[t])));
  for (const LayerInspection& L : r.layers) {
    m.row_labels.push_back(fmt::format("{}", L.layer));
    for (const auto& top : L.lens) {
      m.values.push_back(top.front().prob);
      m.text.push_back(quoted(tok, top.front().id));
    }
  }
  write_heat_map_svg(path, m);
}

}  // namespace gpt
