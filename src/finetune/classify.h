// Sequence classification, GPT-1 style: a linear head [C -> K] (+ bias) on the final hidden state of
// each sequence's last real token, trained with cross-entropy over the labels. See
// docs/classification.md.
//
// Batches are right padded; row i's last real token is at position len_i - 1, so padding (after
// it) never reaches it through the causal mask, and a sequence's prediction does not depend on
// what else is in its batch. Pair inputs (entailment, similarity) are "text_a <delim> text_b" with
// the vocabulary's end-of-text token as the delimiter (see delimiter_ids).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "finetune/loop.h"
#include "finetune/records.h"
#include "generate/embed.h"  // PaddedBatch, pad_right
#include "model/gpt.h"
#include "model/lora.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// Which fields of a record hold what.
struct ClassifyFields {
  std::string text = "text";
  std::string label = "label";
  std::string text_b;  // empty: single-text inputs
};

struct ClassifyExample {
  std::vector<TokenId> ids;
  int label = -1;  // index into the label set; -1 for unlabeled inputs
  size_t line = 0;
};

struct ClassifySplit {
  std::string path;
  std::vector<ClassifyExample> examples;
  size_t truncated = 0;  // examples cut to max_len tokens
};

// The label set of a training file: its distinct label texts, sorted. A record without the label
// field is an error naming the file and line.
std::vector<std::string> collect_labels(const std::vector<Record>& records, const ClassifyFields& f,
                                        const std::string& path);

// The delimiter between text_a and text_b: <|endoftext|> when the vocabulary has it, else the
// tokens of "\n$\n".
std::vector<TokenId> delimiter_ids(const Tokenizer& tok);

// Tokenizes records into examples of at most max_len tokens. Single texts keep their first max_len
// tokens; pairs shorten the longer of the two texts from its end until text_a + delim + text_b fits.
// Errors (naming file and line): a missing or empty text; with `labeled`, a missing label or one
// not in `labels`.
ClassifySplit encode_split(const std::vector<Record>& records, const std::string& path,
                           const ClassifyFields& f, const std::vector<std::string>& labels,
                           const Tokenizer& tok, int max_len, bool labeled = true);

// The linear head. Weights [K, C] row-major (one row per class), bias [K]; gradients alongside.
struct ClassifierHead {
  int C = 0, K = 0;
  std::vector<float> w, b, dw, db;
  ClassifierHead() = default;
  ClassifierHead(int C, int K, uint64_t seed);  // w ~ N(0, 0.02), b = 0

  // logits[i, k] = w[k] . hidden[i, last[i]] + b[k], hidden [B, T, C], logits [B, K].
  void forward(const float* hidden, std::span<const int> last, int T, float* logits) const;
  // Adds the gradients of the head from dlogits [B, K] to dw, db and writes dhidden [B, T, C]:
  // zero everywhere except each row's last position, where it is w^T dlogits[i].
  void backward(const float* hidden, std::span<const int> last, int T, const float* dlogits, float* dhidden);
  void zero_grad();
};

// Mean softmax cross-entropy of logits [B, K] against labels; with dlogits non-null writes
// scale * d(mean loss)/d(logits) there.
double softmax_cross_entropy(const float* logits, std::span<const int> labels, int K, float* dlogits,
                             float scale = 1.0f);
// Row-wise softmax of logits [B, K] in place.
void softmax_rows(float* logits, int B, int K);

// confusion[true][predicted] counts, and the table as text (rows: true labels, columns: predicted).
using Confusion = std::vector<std::vector<size_t>>;
std::string format_confusion(const Confusion& m, const std::vector<std::string>& labels);
nlohmann::json confusion_json(const Confusion& m, const std::vector<std::string>& labels);

// What `gpt classify` needs besides the model: classifier.json.
struct ClassifierInfo {
  std::vector<std::string> labels;
  ClassifyFields fields;
  int max_len = 0;
  std::string train;  // "all", "last:N", "lora"
};
void save_classifier(const std::string& dir, const ClassifierHead& head, const ClassifierInfo& info);
// Reads DIR/classifier.json and DIR/classifier.safetensors; checks the head fits n_embd.
ClassifierHead load_classifier(const std::string& dir, int n_embd, ClassifierInfo* info);

// Runs a model and a head over examples in batches of `batch` (dropout off): probabilities [N, K]
// into *probs (if non-null) and the predicted label indices.
std::vector<int> classify_examples(GPT& model, const ClassifierHead& head,
                                   const std::vector<ClassifyExample>& ex, TokenId pad, int batch,
                                   std::vector<float>* probs = nullptr);

// Classification as a fine-tuning task (finetune/loop.h): the head's weight and bias train as extra
// tensors beside the model's trainable set; evaluate() gives {"loss", "accuracy"}.
class ClassifyTask : public FinetuneTask {
 public:
  ClassifyTask(ClassifySplit train, ClassifySplit val, ClassifySplit test, ClassifierInfo info, int n_embd,
               TokenId pad, int eval_batch, uint64_t seed);
  std::string name() const override { return "classify"; }
  size_t size(Split s) const override { return split(s).examples.size(); }
  double train_batch(GPT& model, std::span<const size_t> idx, float grad_scale, uint64_t seed) override;
  nlohmann::json evaluate(GPT& model, Split s) override;
  std::string metric() const override { return "accuracy"; }
  std::vector<ParamGroup> param_groups() override;
  void save(const std::string& out_dir, const GPT& model) override;

  // confusion[true][predicted] over a split, and its accuracy.
  Confusion confusion(GPT& model, Split s, double* accuracy);
  const ClassifySplit& split(Split s) const;
  ClassifierHead& head() { return head_; }
  const ClassifierInfo& info() const { return info_; }
  // LoRA: the adapters (attached to the model by the caller) train beside the head and are saved
  // with it (adapter_model.safetensors, adapter_config.json). Not owned.
  void set_lora(LoraAdapters* adapters, std::string base_model) {
    lora_ = adapters;
    base_model_ = std::move(base_model);
  }

 private:
  ClassifySplit train_, val_, test_;
  ClassifierInfo info_;
  ClassifierHead head_;
  TokenId pad_;
  int eval_batch_;
  std::vector<float> logits_, dlogits_, dhidden_;
  LoraAdapters* lora_ = nullptr;
  std::string base_model_;
};

}  // namespace gpt
