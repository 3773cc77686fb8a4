// UTF-8 decoding, the character classes, and the dispatched ASCII scanner.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

using namespace gpt;

namespace {
int decode(const std::string& s, uint32_t* cp) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  return decode_utf8(p, p + s.size(), cp);
}
}  // namespace

TEST(Utf8, DecodesValidSequences) {
  uint32_t cp;
  EXPECT_EQ(decode("A", &cp), 1);
  EXPECT_EQ(cp, 0x41u);
  EXPECT_EQ(decode("\xC3\xA9", &cp), 2);  // é
  EXPECT_EQ(cp, 0xE9u);
  EXPECT_EQ(decode("\xE4\xB8\xAD", &cp), 3);  // 中
  EXPECT_EQ(cp, 0x4E2Du);
  EXPECT_EQ(decode("\xF0\x9F\x98\x80", &cp), 4);  // 😀
  EXPECT_EQ(cp, 0x1F600u);
  EXPECT_EQ(decode("\xF4\x8F\xBF\xBF", &cp), 4);  // U+10FFFF
  EXPECT_EQ(cp, 0x10FFFFu);
}

TEST(Utf8, InvalidSequencesDecodeAsOneByte) {
  uint32_t cp;
  for (std::string bad :
       {"\x80", "\xBF", "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF", "\xED\xA0\x80" /*surrogate*/,
        "\xF0\x80\x80\xAF", "\xF4\x90\x80\x80" /*> U+10FFFF*/, "\xF5\x80\x80\x80", "\xFF",
        "\xC3" /*truncated*/, "\xE4\xB8" /*truncated*/, "\xE4\xB8Z"}) {
    EXPECT_EQ(decode(bad, &cp), 1) << testing::PrintToString(bad);
    EXPECT_EQ(cp, kInvalidCodePoint);
  }
}

TEST(Utf8, EncodeDecodeEveryScalarValue) {
  for (uint32_t c = 0; c < 0x110000; c += (c < 0x10000 ? 1 : 7)) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    std::string s;
    append_utf8(s, c);
    uint32_t back;
    ASSERT_EQ(decode(s, &back), static_cast<int>(s.size()));
    ASSERT_EQ(back, c);
  }
}

TEST(CharClasses, MatchTheRegexClassesGpt2Uses) {
  EXPECT_EQ(char_class('a'), CharClass::Letter);
  EXPECT_EQ(char_class('Z'), CharClass::Letter);
  EXPECT_EQ(char_class('7'), CharClass::Number);
  EXPECT_EQ(char_class(' '), CharClass::Space);
  EXPECT_EQ(char_class('\n'), CharClass::Space);
  EXPECT_EQ(char_class('\x0B'), CharClass::Space);
  EXPECT_EQ(char_class('\x1C'),
            CharClass::Other);  // Python's isspace() says yes; Unicode White_Space says no
  EXPECT_EQ(char_class('\''), CharClass::Other);
  EXPECT_EQ(char_class('_'), CharClass::Other);
  EXPECT_EQ(char_class(0x00E9), CharClass::Letter);  // é
  EXPECT_EQ(char_class(0x0301), CharClass::Other);   // combining acute: a mark, not a letter
  EXPECT_EQ(char_class(0x4E2D), CharClass::Letter);  // 中
  EXPECT_EQ(char_class(0xAC00), CharClass::Letter);  // 가
  EXPECT_EQ(char_class(0x0663), CharClass::Number);  // Arabic-Indic three
  EXPECT_EQ(char_class(0x00BD), CharClass::Number);  // ½ (No)
  EXPECT_EQ(char_class(0x2167), CharClass::Number);  // Roman numeral eight (Nl)
  EXPECT_EQ(char_class(0x00A0), CharClass::Space);   // no-break space
  EXPECT_EQ(char_class(0x0085), CharClass::Space);
  EXPECT_EQ(char_class(0x2028), CharClass::Space);
  EXPECT_EQ(char_class(0x3000), CharClass::Space);
  EXPECT_EQ(char_class(0x200B), CharClass::Other);    // zero-width space is not White_Space
  EXPECT_EQ(char_class(0x1F600), CharClass::Other);   // emoji
  EXPECT_EQ(char_class(0x1D400), CharClass::Letter);  // mathematical bold A
  EXPECT_EQ(char_class(0x20000), CharClass::Letter);  // CJK extension B
  EXPECT_EQ(char_class(0x110000), CharClass::Other);
  EXPECT_EQ(char_class(kInvalidCodePoint), CharClass::Other);
}

TEST(CharClasses, WhiteSpaceHasExactly25Members) {
  int spaces = 0;
  for (uint32_t c = 0; c < 0x110000; ++c) spaces += char_class(c) == CharClass::Space;
  EXPECT_EQ(spaces, 25);
}

TEST(AsciiPrefix, AgreesWithAPlainLoopAtEveryLength) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    size_t n = rng() % 300;
    std::vector<uint8_t> buf(n);
    for (auto& b : buf) b = static_cast<uint8_t>(rng() % 128);
    size_t expect = n;
    if (n && rng() % 2) {
      expect = rng() % n;
      buf[expect] = static_cast<uint8_t>(0x80 | rng());
    }
    ASSERT_EQ(ascii_prefix_length(buf.data(), n), expect) << "n=" << n;
  }
}

TEST(ByteLevel, TableIsABijectionOntoPrintableCharacters) {
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    uint32_t u = byte_to_unicode(static_cast<uint8_t>(b));
    EXPECT_TRUE(seen.insert(u).second);
    EXPECT_NE(char_class(u), CharClass::Space) << b;
  }
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_to_unicode('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_unicode('A'), uint32_t('A'));
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(vocab_text_to_bytes(bytes_to_vocab_text(all), &back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(vocab_text_to_bytes("\xE4\xB8\xAD", &back));  // 中 is not in the alphabet
}
