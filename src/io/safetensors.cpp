#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace gpt {

namespace {

// Same limit as the reference implementation: a real header is a few kilobytes per tensor.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8},         {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},           {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},   {DType::U16, "U16", 2},         {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeInfo* dtype_by_name(std::string_view s) {
  for (const auto& d : kDTypes)
    if (s == d.name) return &d;
  return nullptr;
}

const DTypeInfo& info(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i;
  return kDTypes[1];  // unreachable: every enumerator is in the table
}


template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// A JSON value as a non-negative integer that fits in int64, or false.
bool as_index(const nlohmann::json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(INT64_MAX);
}

[[noreturn]] void bad_tensor(const std::string& file, const std::string& tensor, std::string_view why) {
  fail("{}: tensor \"{}\": {}", file, tensor, why);
}

// A short quote of a JSON value for an error message. Nested containers are not printed: dumping
// is recursive, and a hostile header can nest a million levels deep.
std::string value_text(const nlohmann::json& v) {
  if (v.is_object()) return "(an object)";
  if (v.is_array()) {
    if (v.size() > 16) return fmt::format("(an array of {} values)", v.size());
    for (const auto& e : v)
      if (e.is_structured()) return "(an array of arrays)";
  }
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

}  // namespace

const char* to_string(DType d) { return info(d).name; }
size_t dtype_size(DType d) { return info(d).size; }

std::string shape_string(std::span<const int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// ---- reading -------------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto map = std::make_shared<MappedFile>(MappedFile::open(path));
  SafetensorsFile f = parse(map->bytes(), path);
  f.map_ = std::move(map);
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::string_view bytes, const std::string& name) {
  using nlohmann::json;
  const auto* base = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() < 8)
    fail("{}: not a safetensors file: {} bytes, too short for the 8-byte header length", name, bytes.size());
  const uint64_t n = load_le<uint64_t>(base);
  if (n > kMaxHeaderBytes)
    fail("{}: not a safetensors file: header length {} is over the {} byte limit", name, n, kMaxHeaderBytes);
  if (n > bytes.size() - 8)
    fail("{}: truncated: header length {} runs past the end of the file ({} bytes)", name, n, bytes.size());
  const std::string_view header = bytes.substr(8, n);
  const uint8_t* buffer = base + 8 + n;
  const size_t buffer_size = bytes.size() - 8 - n;

  // nlohmann keeps the last of duplicate keys silently; a callback sees every top-level key.
  std::set<std::string> keys;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string() &&
        !keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  const json j = parse_json(header, name + ": the header", cb);
  if (!j.is_object()) fail("{}: the header is not a JSON object", name);
  if (!duplicate.empty()) fail("{}: tensor \"{}\" appears twice in the header", name, duplicate);

  SafetensorsFile f;
  f.name_ = name;
  for (const auto& [key, val] : j.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) fail("{}: \"__metadata__\" is not an object", name);
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string()) fail("{}: metadata \"{}\" is not a string", name, mk);
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!val.is_object()) bad_tensor(name, key, "entry is not an object");
    auto dt = val.find("dtype");
    auto sh = val.find("shape");
    auto off = val.find("data_offsets");
    if (dt == val.end() || sh == val.end() || off == val.end())
      bad_tensor(name, key, "needs \"dtype\", \"shape\" and \"data_offsets\"");
    if (!dt->is_string()) bad_tensor(name, key, "\"dtype\" is not a string");
    const DTypeInfo* d = dtype_by_name(dt->get_ref<const std::string&>());
    if (!d) bad_tensor(name, key, fmt::format("unknown dtype {}", value_text(*dt)));

    TensorEntry t;
    t.name = key;
    t.dtype = d->dtype;
    if (!sh->is_array()) bad_tensor(name, key, "\"shape\" is not an array");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : *sh) {
      uint64_t v;
      if (!as_index(dim, &v))
        bad_tensor(name, key, fmt::format("shape {} has a dimension that is not a size", value_text(*sh)));
      t.shape.push_back(static_cast<int64_t>(v));
      overflow |= __builtin_mul_overflow(numel, v, &numel);
    }
    uint64_t expect = 0;
    overflow |= __builtin_mul_overflow(numel, d->size, &expect);
    if (overflow) bad_tensor(name, key, fmt::format("shape {} is too large", shape_string(t.shape)));

    uint64_t b = 0, e = 0;
    if (!off->is_array() || off->size() != 2 || !as_index((*off)[0], &b) || !as_index((*off)[1], &e))
      bad_tensor(name, key, fmt::format("\"data_offsets\" {} is not two byte offsets", value_text(*off)));
    if (b > e) bad_tensor(name, key, fmt::format("data_offsets [{}, {}] end before they begin", b, e));
    if (e - b != expect)
      bad_tensor(name, key,
                 fmt::format("data_offsets [{}, {}] do not match shape {} of {} ({} bytes)", b, e,
                             shape_string(t.shape), d->name, expect));
    if (e > buffer_size)
      bad_tensor(name, key,
                 fmt::format("data_offsets [{}, {}] run past the end of the data ({} bytes): file truncated?",
                             b, e, buffer_size));
    t.numel = static_cast<size_t>(numel);
    t.begin = static_cast<size_t>(b);
    t.end = static_cast<size_t>(e);
    t.data = buffer + t.begin;
    f.tensors_.push_back(std::move(t));
  }

  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorEntry* prev = nullptr;  // the last non-empty tensor
  for (const auto& t : f.tensors_) {
    if (t.nbytes() == 0) continue;
    if (prev && t.begin < prev->end)
      fail("{}: tensors \"{}\" [{}, {}] and \"{}\" [{}, {}] overlap", name, prev->name, prev->begin,
           prev->end, t.name, t.begin, t.end);
    prev = &t;
  }
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const TensorEntry* SafetensorsFile::find(std::string_view tensor_name) const {
  auto it = index_.find(tensor_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::read_f32(const TensorEntry& t, std::span<float> out) const {
  if (out.size() != t.numel)
    fail("{}: tensor \"{}\" has {} elements, {} expected", name_, t.name, t.numel, out.size());
  const uint8_t* p = t.data;
  const auto n = static_cast<int64_t>(t.numel);
  switch (t.dtype) {
    case DType::F32:
      if (n > 0) std::memcpy(out.data(), p, t.nbytes());
      return;
    case DType::F16:
#pragma omp parallel for if (n > (1 << 20))
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_le<uint16_t>(p + 2 * i));
      return;
    case DType::BF16:
#pragma omp parallel for if (n > (1 << 20))
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_le<uint16_t>(p + 2 * i));
      return;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<double>(p + 8 * i));
      return;
    default:
      fail("{}: tensor \"{}\" is {}: only F32, F16, BF16 and F64 tensors can be read as numbers", name_,
           t.name, to_string(t.dtype));
  }
}

// ---- writing -------------------------------------------------------------------------------------

void write_safetensors(const std::string& path, std::vector<TensorView> tensors,
                       const std::map<std::string, std::string>& metadata) {
  using nlohmann::json;
  // Largest alignment first keeps every tensor naturally aligned in the buffer; then by name.
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorView& a, const TensorView& b) {
    size_t sa = dtype_size(a.dtype), sb = dtype_size(b.dtype);
    return sa != sb ? sa > sb : a.name < b.name;
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<size_t> sizes;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail("{}: \"__metadata__\" cannot name a tensor", path);
    if (header.contains(t.name)) fail("{}: tensor \"{}\" given twice", path, t.name);
    uint64_t bytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) fail("{}: tensor \"{}\" has a negative dimension", path, t.name);
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes))
        fail("{}: tensor \"{}\" is too large", path, t.name);
    }
    if (bytes > 0 && !t.data) fail("{}: tensor \"{}\" has no data", path, t.name);
    header[t.name] = {
        {"dtype", to_string(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    sizes.push_back(static_cast<size_t>(bytes));
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception&) {
    fail("{}: a tensor name or metadata string is not valid UTF-8", path);
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data buffer starts 8-byte aligned
  uint8_t len[8];
  const uint64_t n = text.size();
  std::memcpy(len, &n, 8);

  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(text);
  for (size_t i = 0; i < tensors.size(); ++i) w.write(tensors[i].data, sizes[i]);
  w.commit();
}

}  // namespace gpt
