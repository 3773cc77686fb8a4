// BPE training and the character tokenizer.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/char_tokenizer.h"

using namespace gpt;

TEST(BpeTrain, LearnsTheMostFrequentPairFirst) {
  // "aaab" x3 and "aaac" x1 as separate words: ("a","a") is the most frequent pair.
  BpeTrainOptions opt;
  opt.vocab_size = 256 + 3;
  opt.min_frequency = 1;
  auto res = train_bpe({"aaab aaab aaab aaac"}, opt);
  ASSERT_GE(res.merges.size(), 1u);
  EXPECT_EQ(res.merges[0], std::make_pair(std::string("a"), std::string("a")));
  EXPECT_EQ(res.tokens[256], "aa");
  BpeTokenizer tok(res.tokens, res.merges);
  EXPECT_EQ(tok.decode(tok.encode("aaab aaac")), "aaab aaac");
}

TEST(BpeTrain, MergesNeverCrossPreTokensAndStopAtMinFrequency) {
  BpeTrainOptions opt;
  opt.vocab_size = 1000;
  opt.min_frequency = 2;
  auto res = train_bpe({"hello hello hello world"}, opt);
  for (const auto& [a, b] : res.merges) {
    std::string t = a + b;
    EXPECT_EQ(t.find(' ', 1), std::string::npos) << t;  // a space only ever leads a token
  }
  EXPECT_LT(res.tokens.size(), 1000u);  // ran out of pairs occurring twice
  EXPECT_EQ(std::count(res.tokens.begin(), res.tokens.end(), std::string("hello")), 1);
}

TEST(BpeTrain, TinyShakespeareRoundTripsCompressesAndIsReproducible) {
  const std::string text = test::read_source("data/tinyshakespeare.txt");
  BpeTrainOptions opt;
  opt.vocab_size = 1024;
  opt.special_tokens = {"<|endoftext|>"};
  opt.threads = 2;
  auto res = train_bpe({text}, opt);
  ASSERT_EQ(res.tokens.size(), 1024u);
  EXPECT_EQ(res.tokens.back(), "<|endoftext|>");
  BpeTokenizer tok(res.tokens, res.merges);
  auto ids = tok.encode(text, {}, 2);
  EXPECT_EQ(tok.decode(ids), text);
  const double bytes_per_token = double(text.size()) / double(ids.size());
  EXPECT_GT(bytes_per_token, 2.2);  // 1.0 before merges; 767 merges give about 2.4
  EXPECT_EQ(tok.encode("a<|endoftext|>", AllowedSpecial::everything()).back(), 1023u);

  // Saved, reloaded and retrained: the same vocabulary, byte for byte.
  const std::string dir = test::temp_dir("bpetrain");
  tok.save(dir);
  auto loaded = load_tokenizer(dir);
  EXPECT_EQ(loaded->encode(text, {}, 2), ids);
  auto again = train_bpe({text}, opt);
  EXPECT_EQ(again.merges, res.merges);
  EXPECT_EQ(again.tokens, res.tokens);
  std::filesystem::remove_all(dir);
}

TEST(BpeTrain, RejectsImpossibleSettings) {
  BpeTrainOptions opt;
  opt.vocab_size = 100;
  EXPECT_THROW(train_bpe({"abc"}, opt), Error);
  opt.vocab_size = 300;
  opt.special_tokens = {""};
  EXPECT_THROW(train_bpe({"abc"}, opt), Error);
  opt.special_tokens = {"a"};  // collides with a byte token
  EXPECT_THROW(train_bpe({"abc"}, opt), Error);
}

TEST(CharTokenizer, SortedCodePointsSaveAndLoad) {
  auto tok = CharTokenizer::from_text("hello world \xC3\xA9");
  EXPECT_EQ(tok.vocab_size(), 9u);  // ' ' d e h l o r w é
  EXPECT_EQ(tok.encode("hello"), (std::vector<TokenId>{3, 2, 4, 4, 5}));
  EXPECT_EQ(tok.decode(tok.encode("w\xC3\xA9")), "w\xC3\xA9");
  EXPECT_EQ(tok.encode("\xC3\xA9").at(0), 8u);
  EXPECT_THROW(tok.encode("xyz"), Error);
  EXPECT_THROW(tok.decode(std::vector<TokenId>{9}), Error);
  EXPECT_THROW(CharTokenizer::from_text("bad \xFF"), Error);
  EXPECT_THROW(CharTokenizer::from_text(""), Error);

  const std::string dir = test::temp_dir("charvocab");
  tok.save(dir);
  auto loaded = tokenizer_from_spec("char:" + dir);
  EXPECT_EQ(loaded->kind(), "char");
  EXPECT_EQ(loaded->encode("hello world"), tok.encode("hello world"));
  write_file_atomic(dir + "/chars.json", "{\"chars\": [\"b\", \"a\"]}");
  EXPECT_THROW(load_tokenizer(dir), Error);  // not sorted
  write_file_atomic(dir + "/chars.json", "{\"chars\": [\"ab\"]}");
  EXPECT_THROW(load_tokenizer(dir), Error);  // not one character
  std::filesystem::remove_all(dir);
}
