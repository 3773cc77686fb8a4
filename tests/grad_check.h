// Finite-difference gradient checking for the op and model tests.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace gpt::test {

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// sum_i out[i] * r[i] in double: a scalar "loss" whose gradient w.r.t. out is r.
inline double project(const float* out, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < r.size(); i++) s += static_cast<double>(out[i]) * r[i];
  return s;
}

// Compares analytic[i] with the central difference (f(x+h) - f(x-h)) / 2h for every element
// (or `samples` spread over x when the tensor is big). Passes when |a - n| <= tol * (|a| + |n|)
// + atol, where atol scales with the largest gradient (float32 differences are noisy near 0).
inline void expect_gradient(const char* what, float* x, size_t n, const float* analytic,
                            const std::function<double()>& f, float h = 1e-2f, double tol = 2e-2,
                            size_t samples = 64) {
  double max_abs = 0;
  for (size_t i = 0; i < n; i++) max_abs = std::max(max_abs, std::fabs(static_cast<double>(analytic[i])));
  const double atol = 1e-3 * max_abs + 1e-5;
  const size_t step = n <= samples ? 1 : n / samples;
  int bad = 0;
  for (size_t i = 0; i < n; i += step) {
    const float keep = x[i];
    x[i] = keep + h;
    const double up = f();
    x[i] = keep - h;
    const double down = f();
    x[i] = keep;
    const double numeric = (up - down) / (2.0 * h);
    const double a = analytic[i];
    if (std::fabs(a - numeric) > tol * (std::fabs(a) + std::fabs(numeric)) + atol) {
      if (++bad <= 5)
        ADD_FAILURE() << what << "[" << i << "]: analytic " << a << " vs finite difference " << numeric;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " mismatches";
  EXPECT_GT(max_abs, 0.0) << what << ": the gradient is all zero, so the check proves nothing";
}

}  // namespace gpt::test
