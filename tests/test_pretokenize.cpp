// The pre-tokenizer against hand-worked examples of GPT-2's split regex.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/pretokenize.h"

using namespace gpt;

namespace {
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  pretokenize(reinterpret_cast<const uint8_t*>(s.data()), s.size(),
              [&](size_t b, size_t e) { out.push_back(s.substr(b, e - b)); });
  return out;
}
using V = std::vector<std::string>;
}  // namespace

TEST(Pretokenize, WordsTakeTheirLeadingSpace) {
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("a b  c"), (V{"a", " b", " ", " c"}));
  EXPECT_EQ(split(""), V{});
}

TEST(Pretokenize, ContractionsAreLowerCaseOnly) {
  EXPECT_EQ(split("don't"), (V{"don", "'t"}));
  EXPECT_EQ(split("we'll've"), (V{"we", "'ll", "'ve"}));
  EXPECT_EQ(split("I'm you're he'd it's"), (V{"I", "'m", " you", "'re", " he", "'d", " it", "'s"}));
  EXPECT_EQ(split("IT'S"), (V{"IT", "'", "S"}));
  EXPECT_EQ(split("THEY'LL"), (V{"THEY", "'", "LL"}));
  EXPECT_EQ(split("'sun"), (V{"'s", "un"}));
  EXPECT_EQ(split("''s"), (V{"''", "s"}));  // a punctuation run swallows the apostrophe first
  EXPECT_EQ(split(" 's"), (V{" '", "s"}));
  EXPECT_EQ(split("it\xE2\x80\x99s"), (V{"it", "\xE2\x80\x99", "s"}));  // curly apostrophe: no contraction
  EXPECT_EQ(split("'"), (V{"'"}));
  EXPECT_EQ(split("'l"), (V{"'", "l"}));
}

TEST(Pretokenize, NumbersAndOtherRuns) {
  EXPECT_EQ(split("abc123def"), (V{"abc", "123", "def"}));
  EXPECT_EQ(split("x = 3.14;"), (V{"x", " =", " 3", ".", "14", ";"}));
  EXPECT_EQ(split("!!! ???"), (V{"!!!", " ???"}));
  EXPECT_EQ(split("e\xCC\x81t\xC3\xA9"), (V{"e", "\xCC\x81", "t\xC3\xA9"}));  // combining mark splits
  EXPECT_EQ(split("\xC2\xBD\xE2\x85\xA7"), (V{"\xC2\xBD\xE2\x85\xA7"}));      // ½Ⅷ: both \p{N}
}

TEST(Pretokenize, WhitespaceRunsLeaveTheirLastCharacterForTheNextWord) {
  EXPECT_EQ(split("x   word"), (V{"x", "  ", " word"}));
  EXPECT_EQ(split("x\n\n\ny"), (V{"x", "\n\n", "\n", "y"}));
  EXPECT_EQ(split("x \n\ny"), (V{"x", " \n", "\n", "y"}));
  EXPECT_EQ(split("a\r\nb"), (V{"a", "\r", "\n", "b"}));
  EXPECT_EQ(split("a\nb"), (V{"a", "\n", "b"}));
  EXPECT_EQ(split("end   "), (V{"end", "   "}));  // a run that reaches the end stays whole
  EXPECT_EQ(split("   start"), (V{"  ", " start"}));
  EXPECT_EQ(split(" "), (V{" "}));
  EXPECT_EQ(split("x\xC2\xA0word"), (V{"x", "\xC2\xA0", "word"}));  // only U+0020 joins a word
  EXPECT_EQ(split("a \xC2\xA0 b"), (V{"a", " \xC2\xA0", " b"}));
}

TEST(Pretokenize, InvalidUtf8BytesAreOtherCharacters) {
  EXPECT_EQ(split("ab\xFF\xFE"
                  "cd"),
            (V{"ab", "\xFF\xFE", "cd"}));
  EXPECT_EQ(split(" \x80!"), (V{" \x80!"}));
  EXPECT_EQ(split("\xC3"), (V{"\xC3"}));
}

TEST(Pretokenize, PiecesTileTheInputExactly) {
  std::mt19937 rng(11);
  const char* alphabet[] = {
      "a",        "Z",        "7",    " ",   "  ",       "\n",           "\r\n",
      "\t",       "'",        "'s",   "!",   "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80",
      "\xCC\x81", "\xC2\xA0", "\xFF", "\xE4"};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s;
    int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) s += alphabet[rng() % std::size(alphabet)];
    std::string joined;
    for (const auto& p : split(s)) {
      ASSERT_FALSE(p.empty());
      joined += p;
    }
    ASSERT_EQ(joined, s);
  }
}

// Cutting at safe_split_point and pre-tokenizing the halves separately must give exactly the
// pieces of the whole: that is what makes the parallel encoder exact.
TEST(Pretokenize, SafeSplitPointsDoNotChangeThePieces) {
  std::mt19937 rng(5);
  const char* alphabet[] = {"ab", "Q",  "9", " ",  "   ",      "\n",           "\n\n",     "\r\n",
                            "\t", "'s", "'", "?!", "\xC3\xA9", "\xE4\xB8\xAD", "\xC2\xA0", "\xFF"};
  int cuts = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s;
    int n = static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) s += alphabet[rng() % std::size(alphabet)];
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    size_t cut = safe_split_point(p, s.size(), rng() % (s.size() + 1));
    if (cut == s.size()) continue;
    ++cuts;
    V whole = split(s), parts = split(s.substr(0, cut)), tail = split(s.substr(cut));
    parts.insert(parts.end(), tail.begin(), tail.end());
    ASSERT_EQ(parts, whole) << testing::PrintToString(s) << " cut at " << cut;
  }
  EXPECT_GT(cuts, 1000);
}
