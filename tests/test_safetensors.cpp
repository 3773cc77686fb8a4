// safetensors: the writer and reader round-trip F32/F16/BF16 and metadata, the half and bfloat16
// conversions are exact where they must be, and every kind of damaged file is one gpt::Error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/io.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace gpt {
namespace {

// 8-byte length + header text + data bytes: a file image written by hand.
std::string image(const std::string& header, const std::string& data = "") {
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

// Parsing `bytes` throws gpt::Error whose message contains `part`.
void expect_error(const std::string& bytes, const std::string& part) {
  try {
    SafetensorsFile::parse(bytes, "x.safetensors");
    ADD_FAILURE() << "no error, expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) : path(test::temp_dir(name)) {}
  ~TempDir() { std::filesystem::remove_all(path); }
};

TEST(Safetensors, RoundTripDtypesAndMetadata) {
  TempDir dir("st_roundtrip");
  const std::string path = dir.path + "/t.safetensors";
  const std::vector<float> a = {1.5f, -2.25f, 3.0e-8f, 1e30f, -0.0f, 7.0f};  // [2, 3] F32
  const std::vector<float> h_vals = {0.5f, -2.0f, 65504.0f, std::ldexp(1.0f, -24)};
  const std::vector<float> b_vals = {1.0f, -3.5f, std::ldexp(1.0f, 126), std::ldexp(1.0f, -126)};
  std::vector<uint16_t> h, b;
  for (float v : h_vals) h.push_back(f32_to_f16(v));
  for (float v : b_vals) b.push_back(f32_to_bf16(v));
  const float scalar = 42.0f;
  write_safetensors(path,
                    {{"z.f32", DType::F32, {2, 3}, a.data()},
                     {"half", DType::F16, {4}, h.data()},
                     {"bf", DType::BF16, {2, 2}, b.data()},
                     {"empty", DType::F32, {0, 5}, nullptr},
                     {"scalar", DType::F32, {}, &scalar}},
                    {{"format", "pt"}, {"note", "h\xC3\xA9llo"}});

  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), 5u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "h\xC3\xA9llo");
  const TensorEntry* t = f.find("z.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> out(6);
  f.read_f32(*t, out);
  EXPECT_EQ(std::memcmp(out.data(), a.data(), 24), 0);

  out.resize(4);
  f.read_f32(*f.find("half"), out);
  EXPECT_EQ(out, h_vals);
  f.read_f32(*f.find("bf"), out);
  EXPECT_EQ(out, b_vals);
  EXPECT_EQ(f.find("empty")->numel, 0u);
  EXPECT_TRUE(f.find("scalar")->shape.empty());
  out.resize(1);
  f.read_f32(*f.find("scalar"), out);
  EXPECT_EQ(out[0], 42.0f);
  EXPECT_EQ(f.find("nope"), nullptr);

  // The layout: header padded to 8 bytes; every tensor aligned to its element size in the file.
  std::string bytes = read_file(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  for (const auto& e : f.tensors()) EXPECT_EQ((8 + n + e.begin) % dtype_size(e.dtype), 0u) << e.name;
  // Contiguous, no holes: the data buffer is exactly the tensors.
  EXPECT_EQ(bytes.size(), 8 + n + 24 + 8 + 8 + 4);

  // The reader works the same from memory.
  SafetensorsFile m = SafetensorsFile::parse(bytes, "mem");
  EXPECT_EQ(m.tensors().size(), 5u);
}

TEST(Safetensors, ReadF32ChecksSizeAndDtype) {
  std::string ok = image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("i":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})",
                         floats({1, 2}) + std::string(8, '\0'));
  SafetensorsFile f = SafetensorsFile::parse(ok, "x.safetensors");
  std::vector<float> three(3);
  EXPECT_THROW(f.read_f32(*f.find("a"), three), Error);
  std::vector<float> one(1);
  try {
    f.read_f32(*f.find("i"), one);
    ADD_FAILURE() << "I64 read as float";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is I64"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, HalfConversionsAreExact) {
  // Every half and bfloat16 value survives float32 and back (NaNs stay NaN).
  for (uint32_t u = 0; u < 65536; ++u) {
    const auto h = static_cast<uint16_t>(u);
    float f = f16_to_f32(h);
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << u;
    else
      EXPECT_EQ(f32_to_f16(f), h) << u;
    float g = bf16_to_f32(h);
    if (std::isnan(g))
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(g)))) << u;
    else
      EXPECT_EQ(f32_to_bf16(g), h) << u;
  }
  // Known values and round-to-nearest-even at the ties.
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even (zero)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);  // subnormal rounds up to the smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to infinity
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Safetensors, TruncatedFilesAreErrors) {
  TempDir dir("st_trunc");
  const std::string path = dir.path + "/t.safetensors";
  const std::vector<float> a(10, 1.0f);
  write_safetensors(path, {{"a", DType::F32, {10}, a.data()}, {"b", DType::F32, {5}, a.data()}});
  const std::string whole = read_file(path);
  uint64_t n;
  std::memcpy(&n, whole.data(), 8);
  for (size_t cut : {size_t{0}, size_t{3}, size_t{7}, size_t{8}, size_t{9}, size_t(8 + n / 2), size_t(8 + n),
                     size_t(8 + n + 20), whole.size() - 1}) {
    const std::string part = whole.substr(0, cut);
    EXPECT_THROW(SafetensorsFile::parse(part, "t"), Error) << "cut at " << cut;
    write_file_atomic(path, part);
    EXPECT_THROW(SafetensorsFile::open(path), Error) << "cut at " << cut;
  }
  expect_error(whole.substr(0, 5), "too short");
  expect_error(whole.substr(0, 8 + n - 1), "runs past the end of the file");
  expect_error(whole.substr(0, whole.size() - 1), "file truncated?");
}

TEST(Safetensors, HeaderLengthBeyondFile) {
  std::string bytes = image("{}");
  uint64_t n = 1000;
  std::memcpy(bytes.data(), &n, 8);
  expect_error(bytes, "header length 1000 runs past the end of the file (10 bytes)");
  n = uint64_t{1} << 63;  // absurd: rejected before any arithmetic on it
  std::memcpy(bytes.data(), &n, 8);
  expect_error(bytes, "over the 100000000 byte limit");
  n = ~uint64_t{0};
  std::memcpy(bytes.data(), &n, 8);
  expect_error(bytes, "byte limit");
}

TEST(Safetensors, InvalidJson) {
  expect_error(image(R"({"a": {"dtype": "F32", )"), "not valid JSON");
  expect_error(image(""), "not valid JSON");
  expect_error(image("nul"), "not valid JSON");
  expect_error(image("{\"\xFF\": 1}"), "not valid JSON");  // invalid UTF-8
  expect_error(image("[1, 2]"), "not a JSON object");
  EXPECT_NO_THROW(SafetensorsFile::parse(image("{}      "), "x"));  // trailing padding
}

TEST(Safetensors, BadEntries) {
  expect_error(image(R"({"t": 5})"), "tensor \"t\": entry is not an object");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [1]}})"),
               "needs \"dtype\", \"shape\" and \"data_offsets\"");
  expect_error(image(R"({"t": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", floats({1})),
               "\"dtype\" is not a string");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", floats({1})),
               "\"shape\" is not an array");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", floats({1})),
               "is not two byte offsets");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, -4]}})", floats({1})),
               "is not two byte offsets");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})", floats({1})),
               "is not two byte offsets");
  expect_error(image(R"({"__metadata__": {"a": 1}})"), "metadata \"a\" is not a string");
  expect_error(image(R"({"__metadata__": []})"), "\"__metadata__\" is not an object");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                     R"( "t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                     floats({1, 2})),
               "tensor \"t\" appears twice");
}

TEST(Safetensors, DeeplyNestedHeader) {
  // Deep nesting is refused before anything walks the header (core/json.h).
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  expect_error(image(R"({"t": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 0]}})"),
               "the header: not valid JSON (nested deeper than 256 levels, at line 1, column 287)");
  expect_error(image(R"({"t": {"dtype": )" + deep + "}}"), "nested deeper than 256 levels");
  // Error messages quote values; a nested value is not printed recursively.
  const std::string nested = std::string(200, '[') + std::string(200, ']');
  expect_error(image(R"({"t": {"dtype": "F32", "shape": )" + nested + R"(, "data_offsets": [0, 0]}})"),
               "shape (an array of arrays) has a dimension that is not a size");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": )" + nested + "}}"),
               "is not two byte offsets");
}

TEST(Safetensors, UnknownDtype) {
  expect_error(
      image(R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", std::string(16, 'x')),
      "tensor \"w\": unknown dtype \"F128\"");
  // Known dtypes that are not floats still validate (their sizes are known).
  EXPECT_NO_THROW(SafetensorsFile::parse(
      image(R"({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}})", "abc"), "x"));
}

TEST(Safetensors, NegativeOrHugeShape) {
  expect_error(image(R"({"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}})", floats({1, 2})),
               "shape [-1,2] has a dimension that is not a size");
  expect_error(image(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", floats({1})),
               "not a size");
  expect_error(image(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904],)"
                     R"( "data_offsets": [0, 4]}})",
                     floats({1})),
               "is too large");
  expect_error(image(R"({"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]}})",
                     floats({1})),
               "not a size");
  // numel fits but numel * 4 bytes overflows
  expect_error(image(R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}})",
                     floats({1})),
               "is too large");
}

TEST(Safetensors, OffsetsThatLie) {
  // The message the brief asks for, word for word.
  expect_error(
      image(R"({"h.0.attn.c_attn.weight": {"dtype": "F32", "shape": [768, 2304], "data_offsets": [0, 100]}})",
            std::string(100, '\0')),
      "x.safetensors: tensor \"h.0.attn.c_attn.weight\": data_offsets [0, 100] do not match shape "
      "[768, 2304] of F32 (7077888 bytes)");
  // out of range
  expect_error(image(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", floats({1, 2})),
               "data_offsets [0, 16] run past the end of the data (8 bytes)");
  expect_error(image(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})", floats({1, 2})),
               "run past the end");
  // begin after end
  expect_error(image(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", floats({1, 2, 3})),
               "data_offsets [8, 4] end before they begin");
  // overlapping tensors
  expect_error(image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                     R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                     floats({1, 2, 3})),
               "tensors \"a\" [0, 8] and \"b\" [4, 12] overlap");
  // two names for the same bytes
  expect_error(image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                     R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                     floats({1, 2})),
               "overlap");
  // Empty tensors take no room and overlap nothing.
  EXPECT_NO_THROW(
      SafetensorsFile::parse(image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                   R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                                   floats({1, 2})),
                             "x"));
}

TEST(Safetensors, OpenErrorsNameThePath) {
  TempDir dir("st_open");
  try {
    SafetensorsFile::open(dir.path + "/missing.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.safetensors"), std::string::npos);
  }
  EXPECT_THROW(SafetensorsFile::open(dir.path), Error);  // a directory
  write_file_atomic(dir.path + "/empty.safetensors", "");
  EXPECT_THROW(SafetensorsFile::open(dir.path + "/empty.safetensors"), Error);
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir("st_writer");
  const float x[2] = {1, 2};
  EXPECT_THROW(write_safetensors(dir.path + "/a", {{"a", DType::F32, {2}, x}, {"a", DType::F32, {2}, x}}),
               Error);
  EXPECT_THROW(write_safetensors(dir.path + "/b", {{"a", DType::F32, {-2}, x}}), Error);
  EXPECT_THROW(write_safetensors(dir.path + "/c", {{"a", DType::F32, {2}, nullptr}}), Error);
  EXPECT_THROW(write_safetensors(dir.path + "/d", {{"__metadata__", DType::F32, {2}, x}}), Error);
  // Nothing half-written is left behind.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path));
}

}  // namespace
}  // namespace gpt
