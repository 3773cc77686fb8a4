// The plumbing: atomic writes, CPU detection and its cap, ids as text.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpu.h"
#include "core/error.h"
#include "core/io.h"
#include "test_util.h"
#include "tokenizer/ids_text.h"

using namespace gpt;

TEST(AtomicWrite, ReplacesTheFileAndLeavesNoTemporaries) {
  const std::string dir = test::temp_dir("atomic");
  const std::string path = dir + "/out.txt";
  write_file_atomic(path, "first");
  EXPECT_EQ(read_file(path), "first");
  write_file_atomic(path, std::string(1 << 20, 'x'));
  EXPECT_EQ(read_file(path).size(), size_t(1) << 20);
  write_file_atomic(path, "");
  EXPECT_EQ(read_file(path), "");
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
  std::filesystem::remove_all(dir);
}

TEST(AtomicWrite, FailuresAreErrorsNamingThePath) {
  try {
    write_file_atomic("/nonexistent-dir/x/out.txt", "data");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x/out.txt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_file("/nonexistent-file"), Error);
  EXPECT_THROW(read_file("/tmp"), Error);  // a directory
}

// `--out /dev/null` and friends: a target that is a device or a pipe is written into, never
// replaced by a renamed temp file (which, run as root, would turn /dev/null into a plain file).
TEST(AtomicWrite, WritesIntoAFifoInsteadOfReplacingIt) {
  const std::string dir = test::temp_dir("atomic-fifo");
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // a reader, so the writer can open
  ASSERT_GE(rd, 0);
  write_file_atomic(fifo, "through the pipe");
  char buf[64] = {};
  const ssize_t n = ::read(rd, buf, sizeof buf);
  ::close(rd);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "through the pipe");
  struct stat st;
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced by a regular file";
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) entries += !e.path().empty();
  EXPECT_EQ(entries, 1u);                            // no temp file left beside it
  EXPECT_THROW(write_file_atomic(dir, "x"), Error);  // a directory is not a file to write
  std::filesystem::remove_all(dir);
}

TEST(Cpu, LevelIsConsistentWithTheFeaturesAndTheCap) {
  const CpuFeatures& f = cpu();
  EXPECT_GE(f.logical_cores, 1);
  const std::string level = f.level();
  EXPECT_TRUE(level != "avx512" || (f.avx512f && f.avx512bw && f.avx512vl));
  EXPECT_TRUE(level != "avx2" || f.avx2);
  EXPECT_TRUE(!(f.avx512bf16 || f.avx512vnni) || f.avx512f);
  EXPECT_TRUE(!(f.amx_bf16 || f.amx_int8) || f.amx_tile);
  const std::string cap = std::getenv("GPT_CPU") ? std::getenv("GPT_CPU") : "";
  if (cap == "scalar") {
    EXPECT_EQ(level, "scalar");
  }
  if (cap == "avx2") {
    EXPECT_NE(level, "avx512");
    EXPECT_FALSE(f.amx_tile);
  }
  EXPECT_NE(f.summary().find("dispatch " + level), std::string::npos);
}

TEST(IdsText, MatrixOfRows) {
  const IdMatrix m = parse_id_matrix("1 2 3\n\n 4\t5 6\r\n", "ids.txt", false);
  EXPECT_EQ(m.rows, 2);
  EXPECT_EQ(m.cols, 3);
  EXPECT_EQ(m.values, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(parse_id_matrix("-1 7\n", "t.txt", true).values, (std::vector<int64_t>{-1, 7}));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"1 2\n3\n", "ids.txt: line 2 has 1 ids, line 1 has 2"},
      {"-1 7\n", "ids.txt: line 1: '-1' is not a token id"},
      {"1 -2\n", "ids.txt: line 1: '-2' is not a token id"},
      {"4294967296\n", "is not a token id"},
      {"1 \xFF\n", "'\\xFF' is not a token id"},
      {" \n\t\n", "ids.txt: no token ids"},
  };
  for (const auto& [text, want] : bad) {
    try {
      parse_id_matrix(text, "ids.txt", false);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

TEST(IdsText, IdBiasPairs) {
  EXPECT_EQ(parse_id_biases("50256:-100,198:2.5"),
            (std::vector<std::pair<TokenId, float>>{{50256, -100.0f}, {198, 2.5f}}));
  EXPECT_EQ(parse_id_biases("7:1e1"), (std::vector<std::pair<TokenId, float>>{{7, 10.0f}}));
  for (const char* bad : {"", "5", ":1", "5:", "a:1", "5:x", "5:1,", "-1:2", "5:1:2", "5: 1", "99999999999:1",
                          "5:inf", "5:nan"})
    EXPECT_THROW(parse_id_biases(bad), Error) << bad;
}

TEST(IdsText, ParsesAndFormats) {
  EXPECT_EQ(parse_ids(" 1\n22\t333\r\n4294967295 "), (std::vector<TokenId>{1, 22, 333, 4294967295u}));
  EXPECT_EQ(parse_ids(""), std::vector<TokenId>{});
  EXPECT_EQ(format_ids(std::vector<TokenId>{15496, 995}), "15496\n995\n");
  for (std::string bad : {"12 abc", "-1", "4294967296", "1.5", "0x10", "12abc", "\xFF"}) {
    try {
      parse_ids(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("is not a token id"), std::string::npos);
      for (char c : std::string(e.what()))
        EXPECT_TRUE(c >= 0x20 && c < 0x7F) << "unprintable byte in message";
    }
  }
}
