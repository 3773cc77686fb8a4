#include "tokenizer/tokenizer.h"

#include <mutex>

#include "core/error.h"
#include "core/io.h"
#include "tokenizer/bpe.h"
#include "tokenizer/char_tokenizer.h"
#include "tokenizer/vocab_io.h"

extern "C" {
extern const char gpt_embedded_encoder_json[], gpt_embedded_encoder_json_end[];
extern const char gpt_embedded_vocab_bpe[], gpt_embedded_vocab_bpe_end[];
}

namespace gpt {

bool AllowedSpecial::allows(std::string_view name) const {
  if (all) return true;
  for (const auto& n : names)
    if (n == name) return true;
  return false;
}

std::optional<TokenId> Tokenizer::eot_token() const {
  for (const auto& [name, id] : special_tokens())
    if (name == "<|endoftext|>") return id;
  return std::nullopt;
}

std::shared_ptr<const Tokenizer> gpt2_tokenizer() {
  static std::once_flag once;
  static std::shared_ptr<const Tokenizer> tok;
  std::call_once(once, [] {
    std::string_view json(gpt_embedded_encoder_json,
                          gpt_embedded_encoder_json_end - gpt_embedded_encoder_json);
    std::string_view bpe(gpt_embedded_vocab_bpe, gpt_embedded_vocab_bpe_end - gpt_embedded_vocab_bpe);
    tok = std::make_shared<BpeTokenizer>(parse_vocab_json(json, "bundled encoder.json"),
                                         parse_merges(bpe, "bundled vocab.bpe"));
  });
  return tok;
}

namespace {
using MergeList = std::vector<std::pair<std::string, std::string>>;

std::shared_ptr<const Tokenizer> make_bpe(const std::string& dir, std::vector<std::string> tokens,
                                          MergeList merges) {
  try {
    return std::make_shared<BpeTokenizer>(std::move(tokens), std::move(merges));
  } catch (const Error& e) {
    fail("{}: {}", dir, e.what());
  }
}

std::shared_ptr<const Tokenizer> load_bpe(const std::string& dir, bool or_char) {
  auto in = [&](const char* name) { return dir + "/" + name; };
  if (or_char && file_exists(in("chars.json")))
    return std::make_shared<CharTokenizer>(CharTokenizer::load(dir));
  for (auto [vocab, merges] :
       {std::pair{"encoder.json", "vocab.bpe"}, std::pair{"vocab.json", "merges.txt"}}) {
    if (file_exists(in(vocab)) && file_exists(in(merges)))
      return make_bpe(dir, parse_vocab_json(read_file(in(vocab)), in(vocab)),
                      parse_merges(read_file(in(merges)), in(merges)));
  }
  if (file_exists(in("tokenizer.json"))) {
    auto [tokens, merges] = parse_tokenizer_json(read_file(in("tokenizer.json")), in("tokenizer.json"));
    return make_bpe(dir, std::move(tokens), std::move(merges));
  }
  fail("no {}vocabulary in {} (expected encoder.json + vocab.bpe, vocab.json + merges.txt{})",
       or_char ? "" : "BPE ", dir, or_char ? ", tokenizer.json or chars.json" : " or tokenizer.json");
}
}  // namespace

std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& dir) { return load_bpe(dir, true); }

std::shared_ptr<const Tokenizer> tokenizer_from_spec(const std::string& spec) {
  if (spec.empty() || spec == "gpt2") return gpt2_tokenizer();
  if (spec.starts_with("char:")) {
    std::string dir = spec.substr(5);
    if (!file_exists(dir + "/chars.json")) fail("no character vocabulary (chars.json) in {}", dir);
    return std::make_shared<CharTokenizer>(CharTokenizer::load(dir));
  }
  if (spec.starts_with("bpe:")) return load_bpe(spec.substr(4), false);
  if (spec == "char") fail("--tokenizer char needs a directory: char:DIR (make one with `gpt char-vocab`)");
  return load_tokenizer(spec);
}

}  // namespace gpt
