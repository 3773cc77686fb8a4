// File I/O with clear errors, and atomic writes (temp file, fsync, rename) so no reader ever
// sees a half-written file and a crash never loses the previous version.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt {

// Whole file as bytes; throws gpt::Error naming the path on failure. Reads whatever `path` is,
// a pipe or a FIFO included (--input <(...)).
std::string read_file(const std::string& path);

// The same for a file that must be a regular file (a part of a model, checkpoint or dataset
// directory): a FIFO, device or directory there is an error at once, never a blocking open.
std::string read_regular_file(const std::string& path);

// Opens `path` for reading without blocking (O_NONBLOCK: opening a FIFO with no writer would wait
// forever) and fails unless it is a regular file; the caller closes the descriptor. *size gets the
// file's size.
int open_regular_file(const std::string& path, size_t* size);

// All of standard input as bytes.
std::string read_stdin();

// Writes `data` to `path` atomically: PATH.tmp.<pid>, fsync, rename over PATH, fsync the directory.
void write_file_atomic(const std::string& path, std::string_view data);

// A file written in pieces that appears at `path` all at once: bytes go to PATH.tmp.<pid>;
// commit() fsyncs, renames over `path` and fsyncs the directory. Destroyed without commit()
// (an error on the way), the temp file is removed and `path` is untouched. A `path` that exists
// and is not a regular file (/dev/null, /dev/stdout, a FIFO) is written in place instead.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Overwrites bytes already written (a header patched once the body is known).
  void write_at(size_t offset, const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool direct_ = false;  // writing straight into a device or pipe
};

// Creates a directory (and parents) if missing; throws gpt::Error if that fails.
void make_dirs(const std::string& path);

// True if `path` is a regular file (a FIFO or directory of that name is not).
bool file_exists(const std::string& path);
// True if anything is at `path` (without following a last symlink that dangles: false then).
bool path_exists(const std::string& path);

// A read-only memory map of a whole file (RAII). Empty files map to a null, zero-size view.
class MappedFile {
 public:
  static MappedFile open(const std::string& path);  // throws gpt::Error naming the path
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace gpt
