// Shared by the [cuda] tests (tests/test_cuda_*.cpp): CPU/GPU copies of the
// same data, NaN poisoning of GPU outputs, and the tolerance rule.
//
// Tolerance rule for GPU vs CPU (every [cuda] comparison), u = 2^-24 (float
// unit roundoff), L = the number of terms summed into the element (C*R*S + 1
// for a conv output with bias, N*P*Q + 1 for a weight gradient accumulated
// into an existing value, ...):
//
// 1. EXACT where the inputs make the arithmetic exact. exact_pair() draws
//    integers in [-2, 2]: every product is an integer of magnitude <= 4 and
//    every partial sum of L <= 2^22 of them an integer below 2^24, so it is
//    a float exactly, whatever the order of summation (split-K slices, batch
//    chunks, tiles, FMA contraction or not). The GPU must then equal the CPU
//    reference element for element (require_exact: bit for bit, except that
//    +0 and -0 compare equal). A dropped split-K slice, a dropped or doubled
//    image, a wrong tap: each changes an integer sum, and fails.
//
// 2. fp64 REFERENCE elsewhere (inputs uniform in [-1, 1), where floats round).
//    The reference is computed in double from the same float inputs
//    (tests/cuda_reference64.h; a product of two floats is exact in double),
//    along with the 2-norm of the element's terms t_1..t_L, and
//      |gpu - ref| <= lambda * u * sqrt(L) * (|ref| + ||t||_2),  lambda = 6.
//    Why: a float sum in any order makes one rounding per addition, each at
//    most u times the partial sum s_k; taking the roundings as independent
//    (Higham & Mary, SIAM J. Sci. Comput. 2019) their total stays below
//    lambda * u * sqrt(L) * max_k |s_k| except with probability
//    2 exp(-lambda^2 / 2) ~ 3e-8 per element. The partial sums are bounded
//    by |ref| when the terms drift one way and wander like ||t||_2 when their
//    signs are random; rounding the products adds u * ||t||_2 more.
//    So the allowed error grows like sqrt(L) relative to the result's natural
//    size, not like L: for LeNet conv1's weight gradient at batch 256
//    (L = 200,705, |ref| ~ ||t|| ~ 150) it is about 0.05, where one dropped
//    image changes an element by ~9 and one dropped split-K slice by ~13.
//    tests/test_tolerance_rule.cpp checks on the CPU that the rule accepts the
//    float CPU reference and rejects a dropped image.
//
// 3. ULPS for what both backends compute alike elementwise, or reduce in
//    double and round once to float (batch-norm statistics, cross-entropy,
//    global average pooling, SGD, resize forward): the CPU float reference is
//    then within a few u of the exact value, so it stands in for the fp64
//    reference with |gpu - cpu| <= 8 * u * (|cpu| + m), m = the magnitude of
//    the operands (stated at each call): room for nvcc's FMA contraction (one
//    rounding of an intermediate of size m less) and for the double sums
//    rounding to neighbouring floats. A value both sides round from one
//    double of the same data (batch norm's save_mean / save_invstd) must be
//    equal: the two double sums differ by ~1e-16 relative, so they round to
//    different floats only ~1e-9 of the time, and the test data are fixed.
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
#include "cuda_reference64.h"
#include "test_helpers.h"

#ifdef SCRATCHNET_WITH_CUDA
#include "kernels/elementwise.h"
#endif

namespace scratchnet::cudatest {

constexpr double kUnitRoundoff = 0x1p-24;
constexpr double kLambda = 6.0;

// Rule 3: the allowed |gpu - cpu| for an element whose CPU value is `want`
// and whose operands have magnitude up to m.
inline double ulps_tol(double want, double m) {
  return 8.0 * kUnitRoundoff * (std::fabs(want) + m);
}

// SCRATCHNET_TEST_SMALL=1: small sweeps only (compute-sanitizer runs).
inline bool small() {
  const char* v = std::getenv("SCRATCHNET_TEST_SMALL");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

inline Device gpu() {
  return Device::cuda(0);
}

// Same values on both devices.
struct Pair {
  Tensor cpu, gpu;
};

inline Pair random_pair(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor c = testing::random_tensor(shape, seed, lo, hi);
  return {c, c.to(gpu())};
}

// Integers uniform in [-2, 2] (rule 1): sums of their products are exact.
inline Tensor exact_tensor(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v = g.uniform(shape_numel(shape), -2.0f, 3.0f);
  for (float& e : v) e = std::min(2.0f, std::floor(e));
  return Tensor::from_vector(v, shape);
}

inline Pair exact_pair(const Shape& shape, uint64_t seed) {
  Tensor c = exact_tensor(shape, seed);
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

// Reports the first few elements for which bad(i) holds and fails if any does.
template <typename Bad, typename Describe>
void require_none(std::size_t n, Bad bad, Describe describe, const std::string& what,
                  const std::string& rule) {
  int count = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (bad(i)) {
      if (count < 5) UNSCOPED_INFO(what << "[" << i << "]: " << describe(i));
      ++count;
    }
  INFO(what << ": " << count << " of " << n << " elements break " << rule);
  REQUIRE(count == 0);
}

// Rule 1: equal element for element (NaN/Inf in the GPU result fail).
inline void require_exact(const std::vector<float>& got, const std::vector<float>& want,
                          const std::string& what) {
  REQUIRE(got.size() == want.size());
  require_none(
      got.size(), [&](std::size_t i) { return !std::isfinite(got[i]) || got[i] != want[i]; },
      [&](std::size_t i) {
        return "got " + std::to_string(got[i]) + ", want " + std::to_string(want[i]);
      },
      what, "exact equality (rule 1)");
}

inline void require_exact(const Tensor& got_gpu, const Tensor& want_cpu, const std::string& what) {
  REQUIRE(got_gpu.is_cuda());
  REQUIRE(got_gpu.shape() == want_cpu.shape());
  require_exact(got_gpu.to_vector(), want_cpu.to_vector(), what);
}

// Rule 2: the fp64 bound; L = terms per element (the reference's own count
// when L is 0).
inline double ref64_tol(const Ref64& ref, std::size_t i, double L) {
  return kLambda * kUnitRoundoff * std::sqrt(L) * (std::fabs(ref.value[i]) + ref.norm[i]);
}

inline int64_t count_outside(const std::vector<float>& got, const Ref64& ref, double L) {
  int64_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!std::isfinite(got[i]) || std::fabs(got[i] - ref.value[i]) > ref64_tol(ref, i, L)) ++bad;
  return bad;
}

inline void require_ref64(const std::vector<float>& got, const Ref64& ref, double L,
                          const std::string& what) {
  REQUIRE(got.size() == ref.value.size());
  require_none(
      got.size(),
      [&](std::size_t i) {
        return !std::isfinite(got[i]) || std::fabs(got[i] - ref.value[i]) > ref64_tol(ref, i, L);
      },
      [&](std::size_t i) {
        return "got " + std::to_string(got[i]) + ", fp64 " + std::to_string(ref.value[i]) +
               ", allowed " + std::to_string(ref64_tol(ref, i, L));
      },
      what, "the fp64 bound (rule 2) with L = " + std::to_string(L));
}

inline void require_ref64(const Tensor& got_gpu, const Ref64& ref, double L,
                          const std::string& what) {
  REQUIRE(got_gpu.is_cuda());
  require_ref64(got_gpu.to_vector(), ref, L, what);
}

// Rule 3: within ulps_tol(cpu, m) of the CPU reference.
inline void require_ulps(const std::vector<float>& got, const std::vector<float>& want, double m,
                         const std::string& what) {
  REQUIRE(got.size() == want.size());
  require_none(
      got.size(),
      [&](std::size_t i) {
        return !std::isfinite(got[i]) || std::fabs(got[i] - want[i]) > ulps_tol(want[i], m);
      },
      [&](std::size_t i) {
        return "got " + std::to_string(got[i]) + ", want " + std::to_string(want[i]);
      },
      what, "8 u (|cpu| + " + std::to_string(m) + ") (rule 3)");
}

inline void require_ulps(const Tensor& got_gpu, const Tensor& want_cpu, double m,
                         const std::string& what) {
  REQUIRE(got_gpu.is_cuda());
  REQUIRE(got_gpu.shape() == want_cpu.shape());
  require_ulps(got_gpu.to_vector(), want_cpu.to_vector(), m, what);
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
