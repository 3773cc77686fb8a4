#include "data/dataset.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "data/shards.h"
#include "tokenizer/char_tokenizer.h"

namespace gpt::data {

namespace {

using json = nlohmann::json;

uint64_t get_count(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || !j[key].is_number_unsigned())
    fail("{}: \"{}\" must be a non-negative integer", path, key);
  return j[key].get<uint64_t>();
}

}  // namespace

DatasetInfo read_dataset_info(const std::string& dir) {
  DatasetInfo info;
  const std::vector<std::string> train = find_shards(dir, "train"), val = find_shards(dir, "val");
  const std::string path = dir + "/" + kDatasetJson;
  if (!path_exists(path)) {  // (a FIFO or directory of that name is an error below, not "absent")
    // A plain llm.c directory (e.g. made by llm.c's own scripts): GPT-2 tokens by convention.
    if (train.empty() && val.empty())
      fail("{}: not a dataset: no {} and no train_*.bin / val_*.bin shards (make one with `gpt prepare`)",
           dir, kDatasetJson);
    auto gpt2 = gpt2_tokenizer();
    info.tokenizer_kind = "gpt2";
    info.vocab_size = gpt2->vocab_size();
    info.eot = gpt2->eot_token();
    info.train_shards = train.size();
    info.val_shards = val.size();
    for (const auto& s : train) info.train_tokens += TokenShard(s).size();
    for (const auto& s : val) info.val_tokens += TokenShard(s).size();
    return info;
  }

  const json j = parse_json(read_regular_file(path), path);
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  if (j.value("format", "") != "llmc-shards") fail("{}: \"format\" must be \"llmc-shards\"", path);
  if (!j.contains("tokenizer") || !j["tokenizer"].is_string())
    fail("{}: \"tokenizer\" must be a string", path);
  info.tokenizer_kind = j["tokenizer"].get<std::string>();
  if (info.tokenizer_kind != "gpt2" && info.tokenizer_kind != "bpe" && info.tokenizer_kind != "char")
    fail("{}: unknown tokenizer \"{}\" (expected gpt2, bpe or char)", path, info.tokenizer_kind);
  info.vocab_size = get_count(j, "vocab_size", path);
  if (info.vocab_size == 0 || info.vocab_size > 65536)
    fail("{}: vocab_size {} does not fit token shards (1..65536)", path, info.vocab_size);
  if (!j.contains("eot_id") || !(j["eot_id"].is_null() || j["eot_id"].is_number_unsigned()))
    fail("{}: \"eot_id\" must be a token id or null", path);
  if (!j["eot_id"].is_null()) {
    const uint64_t eot = j["eot_id"].get<uint64_t>();
    if (eot >= info.vocab_size) fail("{}: eot_id {} is not below vocab_size {}", path, eot, info.vocab_size);
    info.eot = static_cast<TokenId>(eot);
  }
  info.documents = get_count(j, "documents", path);
  info.train_tokens = get_count(j, "train_tokens", path);
  info.val_tokens = get_count(j, "val_tokens", path);
  info.train_shards = get_count(j, "train_shards", path);
  info.val_shards = get_count(j, "val_shards", path);
  if (j.contains("bytes")) info.bytes = get_count(j, "bytes", path);
  if (!j.contains("val_fraction") || !j["val_fraction"].is_number())
    fail("{}: \"val_fraction\" must be a number", path);
  info.val_fraction = j["val_fraction"].get<double>();
  if (j.contains("inputs") && j["inputs"].is_array())
    for (const auto& s : j["inputs"])
      if (s.is_string()) info.inputs.push_back(s.get<std::string>());
  // Shards missing or left over from another run would silently change the data.
  if (train.size() != info.train_shards || val.size() != info.val_shards)
    fail("{}: {} lists {} train and {} val shards, but the directory has {} and {}", dir, kDatasetJson,
         info.train_shards, info.val_shards, train.size(), val.size());
  info.has_metadata = true;
  return info;
}

std::shared_ptr<const Tokenizer> dataset_tokenizer(const std::string& dir) {
  const DatasetInfo info = read_dataset_info(dir);
  std::shared_ptr<const Tokenizer> tok;
  if (info.tokenizer_kind == "gpt2")
    tok = gpt2_tokenizer();
  else if (info.tokenizer_kind == "char")
    tok = std::make_shared<CharTokenizer>(CharTokenizer::load(dir));
  else
    tok = tokenizer_from_spec("bpe:" + dir);
  if (tok->vocab_size() != info.vocab_size)
    fail("{}: the vocabulary has {} tokens but {} says {}", dir, tok->vocab_size(), kDatasetJson,
         info.vocab_size);
  if (tok->eot_token() != info.eot)
    fail("{}: the vocabulary's <|endoftext|> id does not match eot_id in {}", dir, kDatasetJson);
  return tok;
}

}  // namespace gpt::data
