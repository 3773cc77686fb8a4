// Data preparation: llm.c token shards (round trip, every kind of corruption), dataset.json, and
// `gpt prepare`'s engine (split rule, documents and EOT, streaming equals whole-text encoding, JSONL).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/io.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "test_util.h"
#include "tokenizer/char_tokenizer.h"

using namespace gpt;
using namespace gpt::data;

namespace {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) : path(test::temp_dir(name)) {}
  ~TempDir() { std::filesystem::remove_all(path); }
};

template <typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

// A shard file built byte by byte, independent of ShardWriter: 256 int32 header, then uint16s.
std::string raw_shard(int32_t magic, int32_t version, int32_t count, const std::vector<uint16_t>& tokens) {
  std::string s(kShardHeaderBytes, '\0');
  auto put = [&](size_t i, int32_t v) {
    for (int b = 0; b < 4; ++b)
      s[i * 4 + b] = static_cast<char>((static_cast<uint32_t>(v) >> (8 * b)) & 0xff);
  };
  put(0, magic);
  put(1, version);
  put(2, count);
  for (uint16_t t : tokens) {
    s += static_cast<char>(t & 0xff);
    s += static_cast<char>(t >> 8);
  }
  return s;
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.is_regular_file() || e.is_directory();
  return n;
}

}  // namespace

TEST(Shards, RoundTripIsLlmcBytes) {
  TempDir dir("shards_rt");
  std::vector<uint16_t> tokens = {0, 1, 50256, 65535, 42, 7};
  const std::string path = dir.path + "/train_000000.bin";
  write_shard(path, tokens.data(), tokens.size());
  // Byte-exact against the format written by hand (little-endian ints, as llm.c's fwrite on x86).
  EXPECT_EQ(read_file(path), raw_shard(20240520, 1, 6, tokens));
  TokenShard s(path);
  ASSERT_EQ(s.size(), tokens.size());
  EXPECT_EQ(std::vector<uint16_t>(s.tokens(), s.tokens() + s.size()), tokens);
  EXPECT_EQ(s.max_token(), 65535);

  // Streamed in pieces, with an empty shard too.
  ShardWriter w(dir.path + "/val_000000.bin");
  w.append(tokens.data(), 2);
  w.append(tokens.data() + 2, 0);
  w.append(tokens.data() + 2, 4);
  EXPECT_EQ(w.size(), 6u);
  w.commit();
  EXPECT_EQ(read_file(dir.path + "/val_000000.bin"), read_file(path));
  write_shard(dir.path + "/val_000001.bin", nullptr, 0);
  EXPECT_EQ(TokenShard(dir.path + "/val_000001.bin").size(), 0u);
  EXPECT_EQ(find_shards(dir.path, "val"),
            (std::vector<std::string>{dir.path + "/val_000000.bin", dir.path + "/val_000001.bin"}));
  EXPECT_EQ(find_shards(dir.path, "train").size(), 1u);
}

TEST(Shards, UncommittedWriterLeavesNothing) {
  TempDir dir("shards_abort");
  {
    ShardWriter w(dir.path + "/train_000000.bin");
    uint16_t t[3] = {1, 2, 3};
    w.append(t, 3);
  }
  EXPECT_EQ(files_in(dir.path), 0u);
}

TEST(Shards, CorruptFilesAreClearErrors) {
  TempDir dir("shards_bad");
  const std::string p = dir.path + "/x.bin";
  const std::vector<uint16_t> t = {5, 6, 7};
  auto open_with = [&](const std::string& bytes, const std::string& why) {
    write_file_atomic(p, bytes);
    expect_error([&] { TokenShard s(p); }, why);
  };
  open_with(raw_shard(20240521, 1, 3, t), "bad magic 20240521");
  open_with(raw_shard(20240520, 2, 3, t), "unsupported token shard version 2");
  open_with(raw_shard(20240520, 1, -1, t), "negative token count -1");
  open_with(raw_shard(20240520, 1, 4, t), "says 4 tokens");  // count too big
  open_with(raw_shard(20240520, 1, 2, t), "says 2 tokens");  // count too small: trailing bytes
  open_with(raw_shard(20240520, 1, 3, t).substr(0, 1024 + 5), "says 3 tokens");  // truncated body
  open_with(raw_shard(20240520, 1, 3, t).substr(0, 100), "shorter than the 1024-byte header");
  open_with("", "shorter than the 1024-byte header");
  expect_error([&] { TokenShard s(dir.path + "/missing.bin"); }, "missing.bin");
}

TEST(DatasetInfo, PlainLlmcDirectoryIsGpt2) {
  TempDir dir("ds_plain");
  std::vector<uint16_t> a(100, 7), b(30, 9);
  write_shard(dir.path + "/train_000000.bin", a.data(), a.size());
  write_shard(dir.path + "/train_000001.bin", a.data(), 50);
  write_shard(dir.path + "/val_000000.bin", b.data(), b.size());
  const DatasetInfo info = read_dataset_info(dir.path);
  EXPECT_FALSE(info.has_metadata);
  EXPECT_EQ(info.tokenizer_kind, "gpt2");
  EXPECT_EQ(info.vocab_size, 50257u);
  EXPECT_EQ(info.eot, std::optional<TokenId>(50256));
  EXPECT_EQ(info.train_shards, 2u);
  EXPECT_EQ(info.val_shards, 1u);
  EXPECT_EQ(info.train_tokens, 150u);
  EXPECT_EQ(info.val_tokens, 30u);
  EXPECT_EQ(dataset_tokenizer(dir.path)->vocab_size(), 50257u);

  TempDir empty("ds_empty");
  expect_error([&] { read_dataset_info(empty.path); }, "not a dataset");
  expect_error([&] { read_dataset_info(empty.path + "/nope"); }, "no such data directory");
}

TEST(DatasetInfo, DatasetJsonIsCheckedAgainstTheDirectory) {
  TempDir dir("ds_json");
  std::vector<uint16_t> a = {0, 1, 2, 1, 0};
  write_shard(dir.path + "/train_000000.bin", a.data(), a.size());
  CharTokenizer::from_text("abc").save(dir.path);
  const std::string good = R"({"format": "llmc-shards", "tokenizer": "char", "vocab_size": 3, "eot_id": null,
    "documents": 1, "train_tokens": 5, "val_tokens": 0, "train_shards": 1, "val_shards": 0,
    "val_fraction": 0.0, "inputs": ["x.txt"]})";
  write_file_atomic(dir.path + "/dataset.json", good);
  const DatasetInfo info = read_dataset_info(dir.path);
  EXPECT_TRUE(info.has_metadata);
  EXPECT_EQ(info.tokenizer_kind, "char");
  EXPECT_EQ(info.vocab_size, 3u);
  EXPECT_FALSE(info.eot.has_value());
  EXPECT_EQ(info.inputs, std::vector<std::string>{"x.txt"});
  auto tok = dataset_tokenizer(dir.path);
  EXPECT_EQ(tok->kind(), "char");
  EXPECT_EQ(tok->decode(std::vector<TokenId>{0, 1, 2}), "abc");

  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    write_file_atomic(dir.path + "/dataset.json", s);
  };
  with(R"("train_shards": 1)", R"("train_shards": 2)");
  expect_error([&] { read_dataset_info(dir.path); },
               "lists 2 train and 0 val shards, but the directory has 1 and 0");
  with(R"("tokenizer": "char")", R"("tokenizer": "sentencepiece")");
  expect_error([&] { read_dataset_info(dir.path); }, "unknown tokenizer \"sentencepiece\"");
  with(R"("vocab_size": 3)", R"("vocab_size": 70000)");
  expect_error([&] { read_dataset_info(dir.path); }, "vocab_size 70000 does not fit");
  with(R"("eot_id": null)", R"("eot_id": 3)");
  expect_error([&] { read_dataset_info(dir.path); }, "eot_id 3 is not below vocab_size 3");
  with(R"("vocab_size": 3)", R"("vocab_size": 4)");
  expect_error([&] { dataset_tokenizer(dir.path); }, "the vocabulary has 3 tokens but dataset.json says 4");
  with(R"("format": "llmc-shards")", R"("format": "npy")");
  expect_error([&] { read_dataset_info(dir.path); }, "\"format\" must be \"llmc-shards\"");
  write_file_atomic(dir.path + "/dataset.json", "{not json");
  expect_error([&] { read_dataset_info(dir.path); }, "not valid JSON");
}
