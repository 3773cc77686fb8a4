#include <gtest/gtest.h>

#include "tokenizer/unicode.h"

using namespace gpt;

TEST(Unicode, Classes) {
  EXPECT_EQ(char_class('a'), CharClass::Letter);
  EXPECT_EQ(char_class('7'), CharClass::Number);
  EXPECT_EQ(char_class(' '), CharClass::Space);
}
