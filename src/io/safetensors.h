// safetensors: Hugging Face's tensor file. Layout:
//   [8 bytes: N, little-endian u64] [N bytes: JSON header] [data buffer]
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, offsets
// relative to the start of the data buffer; an optional "__metadata__" maps strings to strings.
// Reading memory-maps the file and checks every entry against the buffer before anything is
// used, so a damaged or hostile file gives one clear error, never a crash. See docs/checkpoints.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/half.h"  // the F16 and BF16 conversions
#include "core/io.h"  // AtomicFileWriter

namespace gpt {

// Element types safetensors defines. Only F32, F16, BF16 (and F64) convert to float32; the others
// are understood well enough to validate a file that holds them (e.g. integer buffers).
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

const char* to_string(DType d);
size_t dtype_size(DType d);

// "[768, 2304]"
std::string shape_string(std::span<const int64_t> shape);


struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t numel = 0;
  size_t begin = 0, end = 0;      // byte range in the data buffer
  const uint8_t* data = nullptr;  // begin's address in memory (unaligned in general)
  size_t nbytes() const { return end - begin; }
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; error messages start with `path`.
  static SafetensorsFile open(const std::string& path);
  // Validates a file image already in memory. The bytes are borrowed: they must outlive the
  // result. `name` prefixes error messages.
  static SafetensorsFile parse(std::string_view bytes, const std::string& name);

  const std::string& name() const { return name_; }
  // Tensors in data-buffer order.
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* find(std::string_view tensor_name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies a tensor into `out` as float32, converting F16/BF16/F64. Throws if `out` does not
  // hold exactly numel floats or the dtype does not convert.
  void read_f32(const TensorEntry& t, std::span<float> out) const;

 private:
  std::string name_;
  std::shared_ptr<MappedFile> map_;  // null when parsed from borrowed memory
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: raw little-endian elements of `dtype`, row-major, numel(shape) of them.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file atomically (temp file, fsync, rename), streaming each tensor's bytes
// straight from `data`, so a multi-gigabyte model needs no second copy in memory. Tensors are
// laid out largest alignment first, then by name, as Hugging Face's writer does.
void write_safetensors(const std::string& path, std::vector<TensorView> tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace gpt
