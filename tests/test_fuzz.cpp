// Seeded property tests (run in the ASan/UBSan build too): decode(encode(x)) == x for arbitrary
// bytes, and the vocabulary parsers either load or throw gpt::Error on mangled input, never crash.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/char_tokenizer.h"
#include "tokenizer/vocab_io.h"

using namespace gpt;

namespace {

// Random bytes with the structure that matters: UTF-8 of every length, broken sequences,
// whitespace runs, apostrophes, digits and special-token fragments.
std::string random_text(std::mt19937_64& rng, size_t max_len) {
  static const char* pieces[] = {" ",
                                 "  ",
                                 "\n",
                                 "\r\n",
                                 "\t",
                                 "'",
                                 "'s",
                                 "'LL",
                                 "<|endoftext|>",
                                 "<|",
                                 "|>",
                                 "0",
                                 "42",
                                 "abc",
                                 "Hello",
                                 "\xC3\xA9",
                                 "\xE4\xB8\xAD",
                                 "\xF0\x9F\x98\x80",
                                 "\xE2\x80\x8D",
                                 "\xCC\x81",
                                 "\xC2\xA0",
                                 "\xED\xA0\x80",
                                 "\xC0\xAF",
                                 "\xF4\x90\x80\x80"};
  std::string s;
  size_t len = rng() % (max_len + 1);
  while (s.size() < len) {
    switch (rng() % 4) {
      case 0:
        s.push_back(static_cast<char>(rng()));
        break;  // any byte at all
      case 1:
        s.push_back(static_cast<char>(0x20 + rng() % 95));
        break;
      default:
        s += pieces[rng() % std::size(pieces)];
    }
  }
  return s;
}

}  // namespace

TEST(Fuzz, Gpt2RoundTripsArbitraryBytes) {
  auto tok = gpt2_tokenizer();
  std::mt19937_64 rng(20240520);
  for (int trial = 0; trial < 4000; ++trial) {
    std::string s = random_text(rng, trial % 10 == 0 ? 2000 : 80);
    auto ids = tok->encode(s);
    ASSERT_EQ(tok->decode(ids), s) << testing::PrintToString(s);
    auto with_special = tok->encode(s, AllowedSpecial::everything());
    ASSERT_EQ(tok->decode(with_special), s);
    for (TokenId id : ids) ASSERT_NE(id, 50256u);  // specials never appear unless allowed
  }
}

TEST(Fuzz, EveryByteValueAndEveryPairRoundTrips) {
  auto tok = gpt2_tokenizer();
  std::string all;
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += 3) {
      std::string s = {static_cast<char>(a), static_cast<char>(b)};
      ASSERT_EQ(tok->decode(tok->encode(s)), s);
    }
    all.push_back(static_cast<char>(a));
  }
  EXPECT_EQ(tok->decode(tok->encode(all)), all);
}

TEST(Fuzz, VocabularyParsersNeverCrashOnMangledFiles) {
  const std::string json = test::read_source("data/gpt2/encoder.json").substr(0, 4000) + "}";
  const std::string merges = test::read_source("data/gpt2/vocab.bpe").substr(0, 3000);
  std::mt19937_64 rng(99);
  int loaded = 0, rejected = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    std::string j = json, m = merges;
    std::string& victim = trial % 2 ? j : m;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % victim.size();
      switch (rng() % 3) {
        case 0:
          victim[at] = static_cast<char>(rng());
          break;
        case 1:
          victim.erase(at, 1 + rng() % 8);
          break;
        default:
          victim.insert(at, 1, "{}[]\":, \n\\0-9"[rng() % 14]);
      }
      if (victim.empty()) victim = "x";
    }
    try {
      auto tokens = parse_vocab_json(j, "fuzz.json");
      auto merge_list = parse_merges(m, "fuzz.bpe");
      for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
      BpeTokenizer tok(std::move(tokens), std::move(merge_list));
      tok.encode("fuzzing the tokenizer, it's 2024!");
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(loaded + rejected, 1500);
}

TEST(Fuzz, CharTokenizerRejectsInvalidUtf8Cleanly) {
  std::mt19937_64 rng(5);
  auto tok = CharTokenizer::from_text("abc \xC3\xA9\xE4\xB8\xAD");
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s = random_text(rng, 40);
    try {
      auto ids = tok.encode(s);
      ASSERT_EQ(tok.decode(ids), s);
    } catch (const Error&) {
    }
  }
}
