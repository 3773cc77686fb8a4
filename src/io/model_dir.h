// Hugging Face model directories: config.json + model.safetensors (+ vocabulary files), the
// layout transformers' GPT2LMHeadModel.save_pretrained writes and from_pretrained reads.
// See docs/checkpoints.md.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/hf_config.h"
#include "model/gpt.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

// What a loader does when the weights it read hold NaN or Inf: print one warning line
// ("gpt: warning: ...", and go on: gpt info, eval, convert) or fail (where the model cannot work:
// generation, serving, training).
enum class WeightCheck { Warn, Fail };

// Counts NaN and infinite values tensor by tensor and names the first tensor that has any.
class FiniteCheck {
 public:
  void add(std::string_view tensor, std::span<const float> values, const std::vector<int64_t>& shape);
  // Every tensor of a model's parameter arena.
  void add_model(const GPT& model);
  bool ok() const { return count_ == 0; }
  size_t count() const { return count_; }  // non-finite values so far
  // "tensor \"h.1.mlp.c_fc.weight\" holds 1 NaN or infinite value (the first at [3, 5])", and
  // how many more other tensors hold.
  std::string describe() const;
  // Nothing if ok(); else "gpt: warning: WHERE: <describe()>: ..." on stderr, or
  // gpt::Error "WHERE: the weights are not finite: <describe()>".
  void report(std::string_view where, WeightCheck check) const;

 private:
  std::string first_;
  std::vector<int64_t> first_shape_;
  size_t first_index_ = 0, first_count_ = 0;
  size_t count_ = 0, tensors_ = 0;
};

struct LoadedModel {
  GPT model;
  std::shared_ptr<const Tokenizer> tokenizer;  // null if the directory has no vocabulary
};

struct LoadOptions {
  Backend* backend = nullptr;  // where the model runs (the CPU when null)
  // For inference: the matrices packed (model/gpt.h) in `weights`, or the directory's own type
  // (a plain directory: f32). A backend without kernels for packed weights keeps f32 weights in
  // training storage (its own inference path), and refuses bf16 and q8. For training (false): every
  // tensor fp32 in training storage, q8 matrices dequantized; `weights` must then be unset or f32.
  bool inference = false;
  std::optional<ops::WeightType> weights;
  WeightCheck check = WeightCheck::Warn;  // NaN or infinite weights: a warning line, or an error
};

// Reads DIR/config.json and DIR/model.safetensors (or the shards of
// DIR/model.safetensors.index.json). Tensor names may carry transformers' "transformer." prefix;
// F16 and BF16 weights are converted to float32; causal-mask buffers (h.N.attn.bias,
// h.N.attn.masked_bias) are skipped, and so is lm_head.weight when the head is tied. Every
// parameter must be present with exactly the configured shape, and nothing else may be: any
// mismatch is one gpt::Error naming the tensor. The tokenizer comes from "gptcpp_chars" in
// config.json, else from the vocabulary files (vocab.json + merges.txt, encoder.json + vocab.bpe,
// tokenizer.json, chars.json) if there are any.
// A directory `gpt quantize` wrote loads too ("gptcpp_quant": "bf16" or "q8" in config.json; int8
// matrices [OUT, IN] with half-precision scales per 32 inputs; docs/quantization.md): for
// inference its matrices stay as they are stored; `weights`, if given, must be that type.
// NaN or infinite weights are reported as `opt.check` says (one warning line by default).
LoadedModel load_model_dir(const std::string& dir, const LoadOptions& opt = {});
// Training storage on the CPU, NaN or infinite weights reported as `check` says.
LoadedModel load_model_dir(const std::string& dir, WeightCheck check);
// The same for generation, evaluation and serving: on `device` (a backend_for name; an unknown one
// or no GPU fails before anything is read), its matrices in `weights` ("f32", "bf16", "q8"; empty:
// as stored). NaN or infinite weights fail unless `check` says to warn.
LoadedModel load_for_inference(const std::string& dir, std::string_view device = "cpu",
                               std::string_view weights = {}, WeightCheck check = WeightCheck::Fail);

// The tokenizer of a model directory, by the rule above (null if it has none); checks it fits the
// config's vocab_size. `config_path` names config.json in errors.
std::shared_ptr<const Tokenizer> load_dir_tokenizer(const std::string& dir, const HfConfig& hc,
                                                    const std::string& config_path);

// Writes DIR/model.safetensors (the names save_pretrained writes), DIR/config.json and, for a BPE
// tokenizer, its vocab.json + merges.txt (a character tokenizer's alphabet goes into config.json).
// A model in training storage is written in float32; a packed one in its type (what `gpt quantize`
// writes: f32 and bf16 as ordinary Hugging Face directories, q8 as int8 with "gptcpp_quant"). Each
// file is written atomically; config.json last. `tok` may be null.
void save_model_dir(const std::string& dir, const GPT& model, const Tokenizer* tok);

}  // namespace gpt
