// Shared by the tests: deterministic random tensors, closeness with the
// stated tolerance rule, a central finite-difference gradient checker, and
// small helpers (an OpenMP thread count for a scope, v + 1 elementwise, an
// expected IoError).
//
// Tolerance rule (used by every comparison in this suite):
//   |got - want| <= atol + rtol * |want|
// CPU gradients are checked in float against central differences taken in
// double precision of the float forward: we evaluate f(x ± h) with h = 1e-2
// scaled by max(1, |x|), and compare with atol = rtol = 2e-3 * sqrt(reduction
// length / 16 + 1), a bound derived from float rounding in sums of that length
// (each term rounding by ~6e-8 relative, accumulated sqrt(L) times, amplified
// by 1/h in the difference quotient).
#pragma once
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace scratchnet::testing {

// Uniform values in [lo, hi) from a fixed seed.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f,
                            Device device = Device::cpu()) {
  Generator g(seed);
  return Tensor::from_vector(g.uniform(shape_numel(shape), lo, hi), shape, device);
}

// Sets the OpenMP thread count for a scope.
struct ThreadCount {
  int before;
  explicit ThreadCount(int n) : before(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(before); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
};

// Every element plus one: what a kernel that accumulates (+=) into outputs
// that start at 1 must give, given its results from outputs that start at 0.
inline std::vector<float> plus_one(std::vector<float> v) {
  for (float& e : v) e += 1.0f;
  return v;
}

// Runs f, which must throw an IoError whose message contains every needle
// (e.g. the file's path and the problem).
template <typename F>
void require_io_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    std::string all;
    for (const auto& n : needles) all += (all.empty() ? "" : ", ") + n;
    FAIL("expected an IoError mentioning " << all);
  } catch (const IoError& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const auto& n : needles) CHECK(msg.find(n) != std::string::npos);
  }
}

inline double tolerance_scale(int64_t reduction_length) {
  return std::sqrt(static_cast<double>(reduction_length) / 16.0 + 1.0);
}

// Checks every element; reports the first few mismatches with their index.
inline void require_close(const std::vector<float>& got, const std::vector<float>& want,
                          double atol, double rtol, const std::string& what) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const double err = std::fabs(g - w);
    if (!std::isfinite(g) || err > atol + rtol * std::fabs(w)) {
      if (bad < 5) UNSCOPED_INFO(what << "[" << i << "]: got " << g << ", want " << w);
      ++bad;
    }
    if (err > worst) worst = err;
  }
  INFO(what << ": " << bad << " of " << got.size() << " elements outside atol " << atol
            << " + rtol " << rtol << " (largest error " << worst << ")");
  REQUIRE(bad == 0);
}

// Central finite differences of the scalar L(x) = sum(f(inputs) * weights)
// with respect to `wrt` (one of the inputs, modified in place and restored),
// compared with the analytic gradient from backward(). `skip` may exclude
// points at kinks.
inline void check_gradient(const std::function<Tensor()>& f, Tensor wrt, int64_t reduction_length,
                           const std::string& what,
                           const std::function<bool(int64_t)>& skip = nullptr) {
  // Random projection weights make the scalar depend on every output.
  Tensor out = f();
  Tensor proj = random_tensor(out.shape(), 1234, 0.5f, 1.5f);
  auto loss_of = [&](const Tensor& y) {
    double s = 0;
    const float* py = y.host<float>();
    const float* pw = proj.host<float>();
    for (int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(py[i]) * pw[i];
    return s;
  };
  // Analytic: seed the output's gradient with the projection weights.
  wrt.set_grad(Tensor());
  out.backward(proj);
  REQUIRE(wrt.grad().defined());
  const std::vector<float> analytic = wrt.grad().to_vector();

  std::vector<float> numeric(static_cast<std::size_t>(wrt.numel()));
  float* px = wrt.host<float>();
  for (int64_t i = 0; i < wrt.numel(); ++i) {
    if (skip && skip(i)) {
      numeric[i] = analytic[i];
      continue;
    }
    const float x0 = px[i];
    const float h = 1e-2f * std::max(1.0f, std::fabs(x0));
    double lp, lm;
    {
      NoGradGuard ng;
      px[i] = x0 + h;
      lp = loss_of(f());
      px[i] = x0 - h;
      lm = loss_of(f());
    }
    px[i] = x0;
    numeric[i] = static_cast<float>((lp - lm) / (2.0 * static_cast<double>(h)));
  }
  const double tol = 2e-3 * tolerance_scale(reduction_length);
  require_close(analytic, numeric, tol, tol, what);
}

}  // namespace scratchnet::testing
