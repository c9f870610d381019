// Shared by the [cuda] tests (tests/test_cuda_*.cpp): CPU/GPU copies of the
// same random data, NaN poisoning of GPU outputs, and the tolerance rule.
//
// Tolerance rule for GPU vs CPU (every [cuda] comparison):
//   |gpu - cpu| <= atol + rtol * |cpu|,  atol = rtol = cuda_tol(L),
//   cuda_tol(L) = 4 * 2^-23 * (L + 16)
// where L is the length of the longest float reduction behind the element
// (C*R*S for a conv output, N*P*Q for a weight gradient, ...). The two
// backends sum in different orders; a float sum of L terms of magnitude <= 1
// differs between two orders by at most ~L rounding errors of 2^-24 each
// (Higham's gamma_L bound), doubled for the products and again for margin.
// Inputs are uniform in [-1, 1) so the bound's absolute part is meaningful.
// Elementwise ops (L = 1) get 4 * 2^-23 * 17 ~ 8e-6, a few float ulps of O(1).
// An indexing bug gives errors of O(1): far outside every bound used here.
//
// SCRATCHNET_TEST_SMALL=1 shrinks the shape sweeps (for the sanitizer runs).
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda.h"
#include "core/tensor.h"
#include "test_helpers.h"

#ifdef SCRATCHNET_WITH_CUDA
#include "kernels/elementwise.h"
#endif

namespace scratchnet::cudatest {

inline double cuda_tol(double reduction_length) {
  return 4.0 * std::ldexp(1.0, -23) * (reduction_length + 16.0);
}

// SCRATCHNET_TEST_SMALL=1: small sweeps only (compute-sanitizer runs).
inline bool small() {
  const char* v = std::getenv("SCRATCHNET_TEST_SMALL");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

inline Device gpu() {
  return Device::cuda(0);
}

// Same random values on both devices.
struct Pair {
  Tensor cpu, gpu;
};

inline Pair random_pair(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor c = testing::random_tensor(shape, seed, lo, hi);
  return {c, c.to(gpu())};
}

// random_pair whose two tensors are autograd leaves.
inline Pair leaf_pair(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Pair p = random_pair(shape, seed, lo, hi);
  p.cpu.set_requires_grad(true);
  p.gpu.set_requires_grad(true);
  return p;
}

// An uninitialised GPU tensor filled with NaN: an element the kernel fails to
// write stays NaN and fails the comparison.
inline Tensor poisoned(const Shape& shape) {
  Tensor t = Tensor::empty(shape, gpu());
#ifdef SCRATCHNET_WITH_CUDA
  kernels::fill_cuda(t.numel(), std::nanf(""), t.data<float>(), cuda::stream());
#endif
  return t;
}

// Copies GPU results to the host and compares them with the CPU's, rejecting
// NaN/Inf in the GPU result (require_close treats non-finite as a mismatch).
inline void require_match(const Tensor& got_gpu, const Tensor& want_cpu, double tol,
                          const std::string& what) {
  REQUIRE(got_gpu.is_cuda());
  REQUIRE(got_gpu.shape() == want_cpu.shape());
  testing::require_close(got_gpu.to_vector(), want_cpu.to_vector(), tol, tol, what);
}

inline bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline std::string shape_name(std::initializer_list<long long> v) {
  std::string s = "(";
  for (long long x : v) s += (s.size() > 1 ? ", " : "") + std::to_string(x);
  return s + ")";
}

}  // namespace scratchnet::cudatest
