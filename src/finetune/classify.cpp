#include "finetune/classify.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/io.h"
#include "io/peft.h"
#include "core/json.h"
#include "core/rng.h"
#include "io/safetensors.h"

namespace gpt {

std::vector<std::string> collect_labels(const std::vector<Record>& records, const ClassifyFields& f,
                                        const std::string& path) {
  std::set<std::string> s;
  for (const Record& r : records) {
    const std::string l = require_text(r, f.label, path);
    if (l.empty()) fail("{}:{}: the label field \"{}\" is empty", path, r.line, f.label);
    s.insert(l);
  }
  if (s.size() < 2)
    fail("{}: {} distinct label(s) in field \"{}\"; a classifier needs at least 2", path, s.size(), f.label);
  return {s.begin(), s.end()};
}

std::vector<TokenId> delimiter_ids(const Tokenizer& tok) {
  if (const auto eot = tok.eot_token()) return {*eot};
  try {
    return tok.encode("\n$\n");
  } catch (const Error& e) {
    fail(
        "pair inputs: the vocabulary has no <|endoftext|>, and the delimiter \"\\n$\\n\" does not encode "
        "({})",
        e.what());
  }
}

ClassifySplit encode_split(const std::vector<Record>& records, const std::string& path,
                           const ClassifyFields& f, const std::vector<std::string>& labels,
                           const Tokenizer& tok, int max_len, bool labeled) {
  if (max_len < 1) fail("--max-len must be >= 1");
  ClassifySplit s;
  s.path = path;
  const std::vector<TokenId> delim = f.text_b.empty() ? std::vector<TokenId>{} : delimiter_ids(tok);
  for (const Record& r : records) {
    ClassifyExample ex;
    ex.line = r.line;
    const std::string a = require_text(r, f.text, path);
    if (a.empty()) fail("{}:{}: the text field \"{}\" is empty", path, r.line, f.text);
    std::vector<TokenId> ia = tok.encode(a);
    if (f.text_b.empty()) {
      if (ia.size() > static_cast<size_t>(max_len)) {
        ia.resize(max_len);
        s.truncated++;
      }
      ex.ids = std::move(ia);
    } else {
      const std::string b = require_text(r, f.text_b, path);
      if (b.empty()) fail("{}:{}: the text field \"{}\" is empty", path, r.line, f.text_b);
      std::vector<TokenId> ib = tok.encode(b);
      const size_t room = max_len > static_cast<int>(delim.size()) + 1 ? max_len - delim.size() : 0;
      if (room < 2) fail("--max-len {} leaves no room for two texts and the delimiter", max_len);
      if (ia.size() + ib.size() > room) {
        s.truncated++;
        while (ia.size() + ib.size() > room) (ia.size() >= ib.size() ? ia : ib).pop_back();
      }
      ex.ids = std::move(ia);
      ex.ids.insert(ex.ids.end(), delim.begin(), delim.end());
      ex.ids.insert(ex.ids.end(), ib.begin(), ib.end());
    }
    if (labeled) {
      const std::string l = require_text(r, f.label, path);
      const auto it = std::lower_bound(labels.begin(), labels.end(), l);
      if (it == labels.end() || *it != l)
        fail("{}:{}: label \"{}\" is not one of the training labels ({})", path, r.line, l,
             fmt::format("{}", fmt::join(labels, ", ")));
      ex.label = static_cast<int>(it - labels.begin());
    }
    s.examples.push_back(std::move(ex));
  }
  return s;
}

ClassifierHead::ClassifierHead(int C_, int K_, uint64_t seed) : C(C_), K(K_) {
  w.assign(static_cast<size_t>(K) * C, 0.0f);
  b.assign(K, 0.0f);
  dw.assign(w.size(), 0.0f);
  db.assign(K, 0.0f);
  Rng rng(seed);
  // Box-Muller normals, std 0.02 (GPT-2's initialisation)
  for (size_t i = 0; i < w.size(); i++) {
    const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
    w[i] = static_cast<float>(0.02 * std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * M_PI * u2));
  }
}

void ClassifierHead::forward(const float* hidden, std::span<const int> last, int T, float* logits) const {
  const int B = static_cast<int>(last.size());
  for (int i = 0; i < B; i++) {
    const float* h = hidden + (static_cast<size_t>(i) * T + last[i]) * C;
    for (int k = 0; k < K; k++) {
      const float* wk = w.data() + static_cast<size_t>(k) * C;
      double acc = b[k];
      for (int c = 0; c < C; c++) acc += static_cast<double>(wk[c]) * h[c];
      logits[static_cast<size_t>(i) * K + k] = static_cast<float>(acc);
    }
  }
}

void ClassifierHead::backward(const float* hidden, std::span<const int> last, int T, const float* dlogits,
                              float* dhidden) {
  const int B = static_cast<int>(last.size());
  std::fill(dhidden, dhidden + static_cast<size_t>(B) * T * C, 0.0f);
  for (int i = 0; i < B; i++) {
    const size_t at = (static_cast<size_t>(i) * T + last[i]) * C;
    const float* h = hidden + at;
    float* dh = dhidden + at;
    for (int k = 0; k < K; k++) {
      const float g = dlogits[static_cast<size_t>(i) * K + k];
      const float* wk = w.data() + static_cast<size_t>(k) * C;
      float* dwk = dw.data() + static_cast<size_t>(k) * C;
      db[k] += g;
      for (int c = 0; c < C; c++) {
        dwk[c] += g * h[c];
        dh[c] += g * wk[c];
      }
    }
  }
}

void ClassifierHead::zero_grad() {
  std::fill(dw.begin(), dw.end(), 0.0f);
  std::fill(db.begin(), db.end(), 0.0f);
}

double softmax_cross_entropy(const float* logits, std::span<const int> labels, int K, float* dlogits,
                             float scale) {
  const size_t B = labels.size();
  double total = 0;
  for (size_t i = 0; i < B; i++) {
    const float* z = logits + i * K;
    const double mx = *std::max_element(z, z + K);
    double sum = 0;
    for (int k = 0; k < K; k++) sum += std::exp(z[k] - mx);
    const double lse = mx + std::log(sum);
    total += lse - z[labels[i]];
    if (dlogits)
      for (int k = 0; k < K; k++)
        dlogits[i * K + k] = static_cast<float>(
            scale * (std::exp(z[k] - lse) - (k == labels[i] ? 1.0 : 0.0)) / static_cast<double>(B));
  }
  return B ? total / static_cast<double>(B) : 0.0;
}

void softmax_rows(float* logits, int B, int K) {
  for (int i = 0; i < B; i++) {
    float* z = logits + static_cast<size_t>(i) * K;
    const float mx = *std::max_element(z, z + K);
    double sum = 0;
    for (int k = 0; k < K; k++) sum += std::exp(static_cast<double>(z[k]) - mx);
    for (int k = 0; k < K; k++) z[k] = static_cast<float>(std::exp(static_cast<double>(z[k]) - mx) / sum);
  }
}

std::string format_confusion(const Confusion& m, const std::vector<std::string>& labels) {
  size_t w = 9;  // "true \\ pred"
  for (const auto& l : labels) w = std::max(w, l.size());
  for (const auto& row : m)
    for (size_t v : row) w = std::max(w, std::to_string(v).size());
  std::string s = fmt::format("{:<{}}", "true\\pred", w);
  for (const auto& l : labels) s += fmt::format("  {:>{}}", l, w);
  s += "\n";
  for (size_t t = 0; t < labels.size(); t++) {
    s += fmt::format("{:<{}}", labels[t], w);
    for (size_t p = 0; p < labels.size(); p++) s += fmt::format("  {:>{}}", m[t][p], w);
    s += "\n";
  }
  return s;
}

nlohmann::json confusion_json(const Confusion& m, const std::vector<std::string>& labels) {
  return {{"labels", labels}, {"matrix", m}, {"rows", "true label"}, {"columns", "predicted label"}};
}

void save_classifier(const std::string& dir, const ClassifierHead& head, const ClassifierInfo& info) {
  make_dirs(dir);
  write_safetensors(dir + "/classifier.safetensors",
                    {{"classifier.weight", DType::F32, {head.K, head.C}, head.w.data()},
                     {"classifier.bias", DType::F32, {head.K}, head.b.data()}});
  nlohmann::ordered_json j;
  j["labels"] = info.labels;
  j["text_field"] = info.fields.text;
  j["label_field"] = info.fields.label;
  j["text_b_field"] = info.fields.text_b;
  j["delimiter"] = "<|endoftext|> (or the tokens of \"\\n$\\n\" in a vocabulary without it)";
  j["max_len"] = info.max_len;
  j["pooling"] = "last real token";
  j["train"] = info.train;
  write_file_atomic(dir + "/classifier.json", j.dump(2) + "\n");
}

ClassifierHead load_classifier(const std::string& dir, int n_embd, ClassifierInfo* info) {
  const std::string jpath = dir + "/classifier.json";
  if (!path_exists(jpath))
    fail("{} is not a classifier directory: no classifier.json (train one with gpt finetune classify)", dir);
  ClassifierInfo ci;
  const nlohmann::json j = parse_json(read_regular_file(jpath), jpath);
  try {
    ci.labels = j.at("labels").get<std::vector<std::string>>();
    ci.fields.text = j.at("text_field").get<std::string>();
    ci.fields.label = j.at("label_field").get<std::string>();
    ci.fields.text_b = j.value("text_b_field", std::string());
    ci.max_len = j.at("max_len").get<int>();
    ci.train = j.value("train", std::string());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", jpath, json_error_text(e));
  }
  const int K = static_cast<int>(ci.labels.size());
  if (K < 2) fail("{}: fewer than 2 labels", jpath);
  const std::string spath = dir + "/classifier.safetensors";
  const SafetensorsFile f = SafetensorsFile::open(spath);
  const TensorEntry* w = f.find("classifier.weight");
  const TensorEntry* b = f.find("classifier.bias");
  if (!w || !b) fail("{}: needs classifier.weight and classifier.bias", spath);
  if (w->shape != std::vector<int64_t>{K, n_embd} || b->shape != std::vector<int64_t>{K})
    fail("{}: classifier.weight is {} and classifier.bias {}; {} labels and n_embd {} need [{}, {}] and [{}]",
         spath, shape_string(w->shape), shape_string(b->shape), K, n_embd, K, n_embd, K);
  ClassifierHead head(n_embd, K, 0);
  f.read_f32(*w, head.w);
  f.read_f32(*b, head.b);
  if (info) *info = std::move(ci);
  return head;
}

std::vector<int> classify_examples(GPT& model, const ClassifierHead& head,
                                   const std::vector<ClassifyExample>& ex, TokenId pad, int batch,
                                   std::vector<float>* probs) {
  const int K = head.K;
  std::vector<int> pred(ex.size());
  if (probs) probs->assign(ex.size() * K, 0.0f);
  std::vector<float> logits;
  std::vector<const std::vector<TokenId>*> rows;
  for (size_t i0 = 0; i0 < ex.size(); i0 += batch) {
    const size_t n = std::min<size_t>(batch, ex.size() - i0);
    rows.clear();
    for (size_t i = 0; i < n; i++) rows.push_back(&ex[i0 + i].ids);
    const PaddedBatch pb = pad_right(rows, pad);
    model.forward_hidden(pb.ids.data(), pb.B, pb.T);
    logits.resize(n * K);
    head.forward(model.hidden(), pb.last, pb.T, logits.data());
    softmax_rows(logits.data(), static_cast<int>(n), K);
    for (size_t i = 0; i < n; i++) {
      const float* p = logits.data() + i * K;
      pred[i0 + i] = static_cast<int>(std::max_element(p, p + K) - p);
      if (probs) std::copy(p, p + K, probs->begin() + static_cast<std::ptrdiff_t>((i0 + i) * K));
    }
  }
  return pred;
}

ClassifyTask::ClassifyTask(ClassifySplit train, ClassifySplit val, ClassifySplit test, ClassifierInfo info,
                           int n_embd, TokenId pad, int eval_batch, uint64_t seed)
    : train_(std::move(train)),
      val_(std::move(val)),
      test_(std::move(test)),
      info_(std::move(info)),
      head_(n_embd, static_cast<int>(info_.labels.size()), seed),
      pad_(pad),
      eval_batch_(std::max(1, eval_batch)) {}

const ClassifySplit& ClassifyTask::split(Split s) const {
  return s == Split::Train ? train_ : s == Split::Val ? val_ : test_;
}

double ClassifyTask::train_batch(GPT& model, std::span<const size_t> idx, float grad_scale, uint64_t seed) {
  std::vector<const std::vector<TokenId>*> rows;
  std::vector<int> labels;
  for (size_t i : idx) {
    rows.push_back(&train_.examples[i].ids);
    labels.push_back(train_.examples[i].label);
  }
  const PaddedBatch pb = pad_right(rows, pad_);
  const int K = head_.K;
  model.forward_hidden(pb.ids.data(), pb.B, pb.T, /*training=*/true, seed);
  logits_.resize(static_cast<size_t>(pb.B) * K);
  dlogits_.resize(logits_.size());
  head_.forward(model.hidden(), pb.last, pb.T, logits_.data());
  const double loss = softmax_cross_entropy(logits_.data(), labels, K, dlogits_.data(), grad_scale);
  dhidden_.resize(static_cast<size_t>(pb.B) * pb.T * head_.C);
  head_.backward(model.hidden(), pb.last, pb.T, dlogits_.data(), dhidden_.data());
  model.backward_hidden(dhidden_.data());
  return loss;
}

Confusion ClassifyTask::confusion(GPT& model, Split s, double* accuracy) {
  const std::vector<ClassifyExample>& ex = split(s).examples;
  const size_t K = head_.K;
  Confusion m(K, std::vector<size_t>(K, 0));
  const std::vector<int> pred = classify_examples(model, head_, ex, pad_, eval_batch_);
  size_t right = 0;
  for (size_t i = 0; i < ex.size(); i++) {
    m[ex[i].label][pred[i]]++;
    right += pred[i] == ex[i].label;
  }
  if (accuracy) *accuracy = ex.empty() ? 0.0 : static_cast<double>(right) / static_cast<double>(ex.size());
  return m;
}

nlohmann::json ClassifyTask::evaluate(GPT& model, Split s) {
  const std::vector<ClassifyExample>& ex = split(s).examples;
  std::vector<float> probs;
  const std::vector<int> pred = classify_examples(model, head_, ex, pad_, eval_batch_, &probs);
  size_t right = 0;
  double loss = 0;
  for (size_t i = 0; i < ex.size(); i++) {
    right += pred[i] == ex[i].label;
    loss -= std::log(std::max(1e-30, static_cast<double>(probs[i * head_.K + ex[i].label])));
  }
  const double n = std::max<double>(1, static_cast<double>(ex.size()));
  return {{"loss", loss / n}, {"accuracy", static_cast<double>(right) / n}};
}

std::vector<ParamGroup> ClassifyTask::param_groups() {
  const size_t w = head_.w.size(), b = head_.b.size(), n = lora_ ? lora_->num_parameters() : 0;
  std::vector<ParamGroup> g = {{"classifier.weight", head_.w.data(), head_.dw.data(), w, {{0, w, true}}},
                               {"classifier.bias", head_.b.data(), head_.db.data(), b, {{0, b, false}}}};
  // LoRA adapters without weight decay (B starts at zero; decay would only pull it back).
  if (lora_) g.push_back({"lora", lora_->params(), lora_->grads(), n, {{0, n, false}}});
  return g;
}

void ClassifyTask::save(const std::string& out_dir, const GPT& model) {
  (void)model;
  save_classifier(out_dir, head_, info_);
  if (lora_) save_lora(out_dir, *lora_, base_model_);
}

}  // namespace gpt
