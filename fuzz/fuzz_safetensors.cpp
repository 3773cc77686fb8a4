// libFuzzer: safetensors files. Parsing any bytes either works or throws gpt::Error; every tensor
// it accepts lies inside the input and converts to float32 (or is refused with gpt::Error).
#include <cstdlib>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    gpt::SafetensorsFile f = gpt::SafetensorsFile::parse(bytes, "fuzz.safetensors");
    std::vector<float> out;
    for (const auto& t : f.tensors()) {
      if (t.data < data || t.data + t.nbytes() > data + size) std::abort();  // outside the input
      if (f.find(t.name) != &t) std::abort();
      out.resize(t.numel);
      try {
        f.read_f32(t, out);
      } catch (const gpt::Error&) {  // integer dtypes do not convert
      }
    }
  } catch (const gpt::Error&) {
  }
  return 0;
}
