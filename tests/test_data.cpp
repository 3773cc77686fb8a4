// Data preparation: llm.c token shards (round trip, every kind of corruption), dataset.json, and
// `gpt prepare`'s engine (split rule, documents and EOT, streaming equals whole-text encoding, JSONL).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "test_util.h"
#include "tokenizer/char_tokenizer.h"
#include "tokenizer/unicode.h"

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

// ---- gpt prepare ---------------------------------------------------------------------------------

namespace {

std::vector<uint32_t> split_tokens(const std::string& dir, const std::string& split) {
  std::vector<uint32_t> out;
  for (const auto& path : find_shards(dir, split)) {
    TokenShard s(path);
    out.insert(out.end(), s.tokens(), s.tokens() + s.size());
  }
  return out;
}

std::vector<uint32_t> cat(std::vector<uint32_t> a, const std::vector<uint32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

PrepareOptions options(const std::vector<std::string>& inputs, const std::string& out) {
  PrepareOptions o;
  o.inputs = inputs;
  o.out_dir = out;
  o.threads = 2;
  return o;
}

// Visible entries of a directory (the staging directory is hidden and must be gone too).
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(Prepare, ValCutRule) {
  // A newline that follows a printable character, at or after `from`; the newline goes to val.
  EXPECT_EQ(val_cut("abc\ndef\nghi", 2), 3u);
  EXPECT_EQ(val_cut("abc\ndef\nghi", 4), 7u);
  EXPECT_EQ(val_cut("abc\n\n\ndef\nghi", 4), 9u);  // not inside a run of newlines
  // No such newline in the window: whitespace after a printable character, then any character start.
  EXPECT_EQ(val_cut("abc def ghi", 5), 7u);
  EXPECT_EQ(val_cut("abcdefghij\nk", 2, 4), 2u);                      // the newline is beyond the window
  EXPECT_EQ(val_cut("\xe4\xb8\x80\xe4\xb8\x80\xe4\xb8\x80", 4), 6u);  // UTF-8: not inside a character
  EXPECT_EQ(val_cut("abc", 3), 3u);
  EXPECT_EQ(last_safe_cut("ab cd\nef"), 5u);
  EXPECT_EQ(last_safe_cut("ab  "), 2u);
  EXPECT_EQ(last_safe_cut("abcdef"), 0u);
  EXPECT_EQ(last_safe_cut(" \n\t"), 0u);
}

// One document streamed in tiny pieces gives exactly tiktoken's ids of the whole text (the
// fixtures), split at the val cut: train then val, nothing lost or repeated.
TEST(Prepare, StreamedOneDocumentEqualsTiktoken) {
  TempDir out("prep_stream");
  struct Case {
    const char* text;
    const char* ids;
  };
  for (const Case& c : {Case{"tests/data/corpus/english_prose.txt", "tests/data/corpus/english_prose.ids"},
                        Case{"tests/data/corpus/whitespace.txt", "tests/data/corpus/whitespace.ids"},
                        Case{"tests/data/corpus/cjk.txt", "tests/data/corpus/cjk.ids"},
                        Case{"tests/data/corpus/long_words.txt", "tests/data/corpus/long_words.ids"},
                        Case{"tests/data/corpus/special.txt", "tests/data/corpus/special.allowed.ids"}}) {
    const auto want = test::read_ids(c.ids);
    const std::string text = test::read_source(c.text);
    for (size_t chunk : {size_t(7), size_t(100), size_t(1) << 20}) {
      for (double f : {0.0, 0.1, 0.5}) {
        SCOPED_TRACE(std::string(c.text) + " chunk " + std::to_string(chunk) + " f " + std::to_string(f));
        PrepareOptions o = options({test::source_path(c.text)}, out.path + "/d");
        o.chunk_bytes = chunk;
        o.val_fraction = f;
        o.threads = chunk == 7 ? 1 : 2;
        const DatasetInfo info = prepare_dataset(o);
        const auto train = split_tokens(o.out_dir, "train"), val = split_tokens(o.out_dir, "val");
        EXPECT_EQ(cat(train, val), want);
        EXPECT_EQ(info.train_tokens, train.size());
        EXPECT_EQ(info.val_tokens, val.size());
        EXPECT_EQ(info.documents, 1u);
        // val is the text from the cut on: the last floor(f * bytes) bytes, moved to a clean cut.
        const std::string val_text = gpt2_tokenizer()->decode(std::vector<TokenId>(val.begin(), val.end()));
        const size_t from = text.size() - static_cast<size_t>(f * double(text.size()));
        if (f == 0) {
          EXPECT_TRUE(val.empty());
          EXPECT_EQ(info.val_shards, 0u);
        } else {
          EXPECT_EQ(text.size() - val_text.size(), val_cut(text, from));
        }
        std::filesystem::remove_all(o.out_dir);
      }
    }
  }
}

TEST(Prepare, TinyShakespeareSplitsLikeNanoGpt) {
  TempDir out("prep_ts");
  PrepareOptions o = options({test::source_path("data/tinyshakespeare.txt")}, out.path + "/ts");
  o.chunk_bytes = 64 << 10;
  const DatasetInfo info = prepare_dataset(o);
  const auto want = test::read_ids("tests/data/corpus/tinyshakespeare.ids");
  EXPECT_EQ(cat(split_tokens(o.out_dir, "train"), split_tokens(o.out_dir, "val")), want);
  // nanoGPT's prepare.py cuts the characters at 90% and gets 301,966 / 36,059 tokens; the cut here
  // is the next line end after 90% of the bytes.
  EXPECT_EQ(info.train_tokens, 301967u);
  EXPECT_EQ(info.val_tokens, 36058u);

  o.tokenizer = "char";
  o.out_dir = out.path + "/ts_char";
  const DatasetInfo ci = prepare_dataset(o);
  EXPECT_EQ(ci.tokenizer_kind, "char");
  EXPECT_EQ(ci.vocab_size, 65u);  // nanoGPT's shakespeare_char: 65 characters
  EXPECT_FALSE(ci.eot.has_value());
  EXPECT_EQ(ci.train_tokens + ci.val_tokens, 1115394u);
  EXPECT_EQ(ci.val_tokens, 111539u);
  auto tok = dataset_tokenizer(o.out_dir);
  const auto ids = cat(split_tokens(o.out_dir, "train"), split_tokens(o.out_dir, "val"));
  EXPECT_EQ(tok->decode(std::vector<TokenId>(ids.begin(), ids.end())),
            test::read_source("data/tinyshakespeare.txt"));
}

// Several documents: each followed by <|endoftext|>; val is every document that starts at or
// after byte total - floor(f * total), never the first, at least the last.
TEST(Prepare, SeveralDocumentsSplitWhole) {
  TempDir dir("prep_docs");
  auto tok = gpt2_tokenizer();
  std::vector<std::string> paths, texts;
  for (int i = 0; i < 10; ++i) {
    std::string t = "Document " + std::to_string(i) + " says hello.";
    t.resize(100, i % 2 ? '!' : ' ');
    texts.push_back(t);
    paths.push_back(dir.path + "/doc" + std::to_string(i) + ".txt");
    write_file_atomic(paths.back(), t);
  }
  auto expected = [&](int first, int last) {
    std::vector<uint32_t> ids;
    for (int i = first; i < last; ++i) {
      auto d = tok->encode(texts[i]);
      ids.insert(ids.end(), d.begin(), d.end());
      ids.push_back(50256);
    }
    return ids;
  };
  struct Case {
    double f;
    int n_files, first_val;
  };
  // 1000 bytes, f 0.25: c = 750, so docs starting at 800 and 900. 3 files, f 0.1: c = 270, no
  // document starts there, so the last one. f 0: no val at all. f 0.95: c = 50: all but the first.
  for (const Case& c : {Case{0.25, 10, 8}, Case{0.1, 3, 2}, Case{0.0, 10, 10}, Case{0.95, 10, 1}}) {
    SCOPED_TRACE(c.f);
    PrepareOptions o =
        options(std::vector<std::string>(paths.begin(), paths.begin() + c.n_files), dir.path + "/out");
    o.val_fraction = c.f;
    o.chunk_bytes = 16;
    const DatasetInfo info = prepare_dataset(o);
    EXPECT_EQ(info.documents, size_t(c.n_files));
    EXPECT_EQ(split_tokens(o.out_dir, "train"), expected(0, c.first_val));
    EXPECT_EQ(split_tokens(o.out_dir, "val"), expected(c.first_val, c.n_files));
    std::filesystem::remove_all(o.out_dir);
  }
  // A character vocabulary has no <|endoftext|>: documents are simply joined.
  PrepareOptions o = options({paths[0], paths[1]}, dir.path + "/char");
  o.tokenizer = "char";
  o.val_fraction = 0;
  prepare_dataset(o);
  auto ctok = dataset_tokenizer(o.out_dir);
  const auto ids = split_tokens(o.out_dir, "train");
  EXPECT_EQ(ctok->decode(std::vector<TokenId>(ids.begin(), ids.end())), texts[0] + texts[1]);
}

TEST(Prepare, JsonlDocuments) {
  TempDir dir("prep_jsonl");
  auto tok = gpt2_tokenizer();
  std::string jsonl;
  std::vector<std::string> docs;
  std::vector<uint64_t> starts;
  for (int i = 0; i < 20; ++i) {
    // Escapes and a literal <|endoftext|>, which in JSONL is ordinary text.
    docs.push_back("Line " + std::to_string(i) + ": caf\u00e9 \"quoted\" <|endoftext|> stays text.\n");
    if (i == 5) jsonl += "   \n\n";  // blank lines are skipped
    starts.push_back(jsonl.size());
    jsonl += nlohmann::json{{"id", i}, {"body", docs.back()}}.dump() + "\n";
  }
  jsonl += nlohmann::json{{"body", ""}}.dump();  // an empty document (and no final newline)
  const std::string path = dir.path + "/docs.jsonl";
  write_file_atomic(path, jsonl);

  PrepareOptions o = options({path}, dir.path + "/out");
  o.jsonl_field = "body";
  o.val_fraction = 0.2;
  o.chunk_bytes = 50;  // smaller than a line
  const DatasetInfo info = prepare_dataset(o);
  EXPECT_EQ(info.documents, 20u);
  const uint64_t c = jsonl.size() - static_cast<uint64_t>(0.2 * double(jsonl.size()));
  std::vector<uint32_t> train, val;
  for (int i = 0; i < 20; ++i) {
    auto& out = starts[i] >= c ? val : train;
    auto ids = tok->encode(docs[i]);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 50256), 0);
    out.insert(out.end(), ids.begin(), ids.end());
    out.push_back(50256);
  }
  EXPECT_FALSE(val.empty());
  EXPECT_EQ(split_tokens(o.out_dir, "train"), train);
  EXPECT_EQ(split_tokens(o.out_dir, "val"), val);

  // Mixed with a text file: the text file is one more document.
  std::filesystem::remove_all(o.out_dir);
  o.inputs = {test::source_path("tests/data/corpus/english_prose.txt"), path};
  o.val_fraction = 0;
  prepare_dataset(o);
  auto mixed = test::read_ids("tests/data/corpus/english_prose.ids");
  mixed.push_back(50256);
  EXPECT_EQ(split_tokens(o.out_dir, "train"), cat(mixed, cat(train, val)));

  // One JSONL document: the one-document rule, inside its text.
  const std::string one = dir.path + "/one.jsonl";
  const std::string text = test::read_source("tests/data/corpus/english_prose.txt");
  write_file_atomic(one, "\n" + nlohmann::json{{"text", text}}.dump() + "\n\n");
  PrepareOptions o1 = options({one}, dir.path + "/one");
  const DatasetInfo i1 = prepare_dataset(o1);
  EXPECT_EQ(i1.documents, 1u);
  EXPECT_GT(i1.val_tokens, 0u);
  EXPECT_EQ(cat(split_tokens(o1.out_dir, "train"), split_tokens(o1.out_dir, "val")),
            test::read_ids("tests/data/corpus/english_prose.ids"));
}

TEST(Prepare, BadJsonlIsAnErrorNamingTheLine) {
  TempDir dir("prep_badjsonl");
  const std::string path = dir.path + "/bad.jsonl";
  auto try_with = [&](const std::string& content, const std::string& why) {
    write_file_atomic(path, content);
    PrepareOptions o = options({path}, dir.path + "/out");
    expect_error([&] { prepare_dataset(o); }, why);
    EXPECT_FALSE(std::filesystem::exists(o.out_dir)) << "left partial output for: " << why;
  };
  try_with("{\"text\": \"a\"}\n{\"text\": \"b\"\n", "bad.jsonl:2: not valid JSON");
  try_with("{\"text\": \"a\"}\n\n[1, 2]\n", "bad.jsonl:3: expected a JSON object");
  try_with("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", "bad.jsonl:2: no string field \"text\"");
  try_with("{\"text\": 5}\n", "bad.jsonl:1: no string field \"text\"");
  try_with("\n  \n", "no documents in the input");
}

TEST(Prepare, ShardsFillInOrder) {
  TempDir dir("prep_shards");
  PrepareOptions o = options({test::source_path("tests/data/corpus/english_prose.txt")}, dir.path + "/out");
  o.shard_tokens = 100;
  o.val_fraction = 0.3;
  const DatasetInfo info = prepare_dataset(o);
  const auto train_files = find_shards(o.out_dir, "train"), val_files = find_shards(o.out_dir, "val");
  EXPECT_EQ(train_files.size(), (info.train_tokens + 99) / 100);
  EXPECT_EQ(val_files.size(), (info.val_tokens + 99) / 100);
  EXPECT_EQ(info.train_shards, train_files.size());
  for (size_t i = 0; i + 1 < train_files.size(); ++i) EXPECT_EQ(TokenShard(train_files[i]).size(), 100u);
  EXPECT_EQ(std::filesystem::path(train_files[1]).filename(), "train_000001.bin");
  EXPECT_EQ(cat(split_tokens(o.out_dir, "train"), split_tokens(o.out_dir, "val")),
            test::read_ids("tests/data/corpus/english_prose.ids"));
  const DatasetInfo back = read_dataset_info(o.out_dir);
  EXPECT_EQ(back.train_tokens, info.train_tokens);
  EXPECT_EQ(back.val_tokens, info.val_tokens);
  EXPECT_EQ(back.documents, 1u);
  EXPECT_EQ(back.inputs, o.inputs);
}

TEST(Prepare, ExistingDatasetNeedsForceAndIsReplacedWhole) {
  TempDir dir("prep_force");
  PrepareOptions o = options({test::source_path("tests/data/corpus/english_prose.txt")}, dir.path + "/out");
  o.shard_tokens = 100;
  prepare_dataset(o);
  const size_t many = find_shards(o.out_dir, "train").size();
  ASSERT_GT(many, 3u);
  o.shard_tokens = 1000;
  expect_error([&] { prepare_dataset(o); }, "already holds a dataset");
  o.force = true;
  const DatasetInfo info = prepare_dataset(o);
  EXPECT_EQ(find_shards(o.out_dir, "train").size(), 1u);  // the old extra shards are gone
  EXPECT_EQ(read_dataset_info(o.out_dir).train_tokens, info.train_tokens);
  EXPECT_EQ(entries(o.out_dir),
            (std::vector<std::string>{"dataset.json", "train_000000.bin", "val_000000.bin"}));

  // A failure halfway leaves a directory that was already there as it was.
  const std::string bad = dir.path + "/bad.jsonl";
  write_file_atomic(bad, std::string("{\"text\": \"fine\"}\n").append(10, '\n') + "oops\n");
  o.inputs = {test::source_path("tests/data/corpus/english_prose.txt"), bad};
  expect_error([&] { prepare_dataset(o); }, "bad.jsonl:12: not valid JSON");
  EXPECT_EQ(entries(o.out_dir),
            (std::vector<std::string>{"dataset.json", "train_000000.bin", "val_000000.bin"}));
  EXPECT_EQ(read_dataset_info(o.out_dir).train_tokens, info.train_tokens);
}

TEST(Prepare, KilledRunsLeaveOnlyHiddenStagingThatIsCleanedUp) {
  TempDir dir("prep_stale");
  const std::string out = dir.path + "/out";
  make_dirs(out + "/.prepare.tmp.999999999");  // no such process: a run that was killed
  write_file_atomic(out + "/.prepare.tmp.999999999/train_000000.bin", "partial");
  make_dirs(out + "/.prepare.tmp.1");              // a live process (init): maybe still running, kept
  EXPECT_TRUE(find_shards(out, "train").empty());  // staging is invisible to readers
  prepare_dataset(options({test::source_path("tests/data/corpus/english_prose.txt")}, out));
  EXPECT_EQ(entries(out), (std::vector<std::string>{".prepare.tmp.1", "dataset.json", "train_000000.bin",
                                                    "val_000000.bin"}));
}

TEST(Prepare, VocabularyDirectoryIsSavedBeside) {
  TempDir dir("prep_bpe");
  PrepareOptions o = options({test::source_path("tests/data/corpus/english_prose.txt")}, dir.path + "/out");
  o.tokenizer = test::source_path("data/gpt2");  // as --vocab DIR: a BPE vocabulary, saved with the data
  const DatasetInfo info = prepare_dataset(o);
  EXPECT_EQ(info.tokenizer_kind, "bpe");
  EXPECT_EQ(info.eot, std::optional<TokenId>(50256));
  EXPECT_TRUE(file_exists(o.out_dir + "/vocab.json"));
  EXPECT_TRUE(file_exists(o.out_dir + "/merges.txt"));
  auto tok = dataset_tokenizer(o.out_dir);
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->vocab_size(), 50257u);
  EXPECT_EQ(cat(split_tokens(o.out_dir, "train"), split_tokens(o.out_dir, "val")),
            test::read_ids("tests/data/corpus/english_prose.ids"));
}

TEST(Prepare, BadInputsAndOptions) {
  TempDir dir("prep_bad");
  const std::string good = test::source_path("tests/data/corpus/english_prose.txt");
  const std::string out = dir.path + "/out";
  auto expect_fails = [&](PrepareOptions o, const std::string& why) {
    expect_error([&] { prepare_dataset(o); }, why);
    EXPECT_FALSE(std::filesystem::exists(out)) << why;
  };
  expect_fails(options({dir.path + "/missing.txt"}, out), "cannot open " + dir.path + "/missing.txt");
  write_file_atomic(dir.path + "/empty.txt", "");
  expect_fails(options({good, dir.path + "/empty.txt"}, out), "empty.txt is empty");
  expect_fails(options({dir.path}, out), "it is a directory");
  expect_fails(options({}, out), "no input files");
  PrepareOptions o = options({good}, out);
  o.val_fraction = 1;
  expect_fails(o, "at least 0 and below 1 (got 1)");
  o = options({good}, out);
  o.shard_tokens = 0;
  expect_fails(o, "tokens per shard must be between 1 and");
  o = options({good}, out);
  o.tokenizer = dir.path + "/novocab";
  expect_fails(o, "novocab");
  // Invalid UTF-8 cannot make a character vocabulary: the byte offset is named.
  write_file_atomic(dir.path + "/latin1.txt", "abc\ncaf\xe9\n");
  o = options({dir.path + "/latin1.txt"}, out);
  o.tokenizer = "char";
  expect_fails(o, "latin1.txt: not valid UTF-8 at byte 7");
  // More than 65536 distinct characters do not fit 16-bit token ids.
  std::string wide;
  for (uint32_t cp = 0x100, n = 0; n < 65537; ++cp)
    if (cp < 0xD800 || cp > 0xDFFF) append_utf8(wide, cp), ++n;
  write_file_atomic(dir.path + "/wide.txt", wide);
  o = options({dir.path + "/wide.txt"}, out);
  o.tokenizer = "char";
  expect_fails(o, "the vocabulary has 65537 tokens");
  // The output is a file, or cannot be written.
  write_file_atomic(dir.path + "/file", "x");
  expect_error([&] { prepare_dataset(options({good}, dir.path + "/file")); }, "not a directory");
  if (::geteuid() != 0) {  // root writes anywhere
    std::filesystem::create_directory(dir.path + "/ro");
    std::filesystem::permissions(dir.path + "/ro",
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    expect_error([&] { prepare_dataset(options({good}, dir.path + "/ro")); }, "cannot write to");
  }
}
