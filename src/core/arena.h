// A flat, 64-byte aligned float buffer: the parameter, gradient and activation arenas. Memory is
// planned once per shape and carved into tensors; nothing is allocated in the hot loops.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace gpt {

class FloatArena {
 public:
  FloatArena() = default;
  explicit FloatArena(size_t n) { resize(n); }
  FloatArena(FloatArena&& o) noexcept : data_(std::exchange(o.data_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  FloatArena& operator=(FloatArena&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(n_, o.n_);
    return *this;
  }
  FloatArena(const FloatArena&) = delete;
  FloatArena& operator=(const FloatArena&) = delete;
  ~FloatArena() { std::free(data_); }

  // Reallocates to n floats, all zero. Throws std::bad_alloc.
  void resize(size_t n) {
    std::free(data_);
    data_ = nullptr;
    n_ = 0;
    if (n == 0) return;
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!data_) throw std::bad_alloc();
    std::memset(data_, 0, bytes);
    n_ = n;
  }
  void zero() {
    if (data_) std::memset(data_, 0, n_ * sizeof(float));
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(float); }
  bool empty() const { return n_ == 0; }

 private:
  float* data_ = nullptr;
  size_t n_ = 0;
};

}  // namespace gpt
