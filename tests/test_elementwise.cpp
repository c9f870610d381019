// Pointwise ops (relu, sigmoid, add, accumulate, fill) on the CPU.
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Gradients: check_gradient's rule, reduction length 1 (no sums). Values
// computed here in double from the same formula: 1 float rounding of the
// result plus expf's ~1 ulp, so atol = rtol = 1e-6.
#include <cmath>
#include <limits>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/elementwise.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;

TEST_CASE("relu gradient matches finite differences away from 0", "[elementwise]") {
  Tensor x = random_tensor({3, 4, 5}, 7, -2.0f, 2.0f);
  x.set_requires_grad(true);
  const std::vector<float> xv = x.to_vector();
  // The kink: a step of h = 1e-2 * max(1, |x|) must not cross 0.
  check_gradient([&] { return relu(x); }, x, 1, "relu dx",
                 [&](int64_t i) { return std::fabs(xv[i]) < 0.05f; });
}

TEST_CASE("sigmoid gradient matches finite differences", "[elementwise]") {
  Tensor x = random_tensor({2, 3, 7}, 8, -4.0f, 4.0f);
  x.set_requires_grad(true);
  check_gradient([&] { return sigmoid(x); }, x, 1, "sigmoid dx");
}

TEST_CASE("add gradient reaches both operands", "[elementwise]") {
  Tensor a = random_tensor({2, 3, 4}, 1), b = random_tensor({2, 3, 4}, 2);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  check_gradient([&] { return add(a, b); }, a, 1, "add da");
  check_gradient([&] { return add(a, b); }, b, 1, "add db");
  // The same tensor twice: both contributions accumulate (d(a+a)/da = 2).
  a.set_grad(Tensor());
  Tensor y = add(a, a);
  y.backward(Tensor::full(y.shape(), 1.0f));
  CHECK(a.grad().to_vector() == std::vector<float>(24, 2.0f));
}

TEST_CASE("relu and sigmoid values", "[elementwise]") {
  Tensor x = Tensor::from_vector<float>({-3.0f, -0.0f, 0.0f, 0.5f, 100.0f, -100.0f, -1000.0f}, {7});
  CHECK(relu(x).to_vector() == std::vector<float>{0, 0, 0, 0.5f, 100, 0, 0});
  const auto s = sigmoid(x).to_vector();
  std::vector<float> want;
  for (float v : x.to_vector())
    want.push_back(static_cast<float>(1.0 / (1.0 + std::exp(-double(v)))));
  require_close(s, want, 1e-6, 1e-6, "sigmoid");
  CHECK(s[1] == 0.5f);
  CHECK(s[6] == 0.0f);  // e^1000 overflows to inf: the result is 0, not NaN
  CHECK(s[4] == 1.0f);
}

TEST_CASE("pointwise kernels accumulate and cover the parallel path", "[elementwise]") {
  // Large enough to take the OpenMP branch, odd to leave a vector tail.
  const int64_t n = (1 << 16) + 3;
  Tensor x = random_tensor({n}, 3, -2.0f, 2.0f), dy = random_tensor({n}, 4);
  const auto xv = x.to_vector(), dyv = dy.to_vector();
  std::vector<float> y(n), dx(n, 1.0f);
  kernels::relu_forward_cpu(n, xv.data(), y.data());
  kernels::relu_backward_cpu(n, y.data(), dyv.data(), dx.data());
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float want_y = xv[i] > 0 ? xv[i] : 0.0f;
    const float want_dx = 1.0f + (xv[i] > 0 ? dyv[i] : 0.0f);  // += onto 1
    bad += (y[i] != want_y) + (dx[i] != want_dx);
  }
  CHECK(bad == 0);

  std::fill(dx.begin(), dx.end(), 1.0f);
  kernels::sigmoid_forward_cpu(n, xv.data(), y.data());
  kernels::sigmoid_backward_cpu(n, y.data(), dyv.data(), dx.data());
  std::vector<float> want_y(n), want_dx(n);
  for (int64_t i = 0; i < n; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-double(xv[i])));
    want_y[i] = static_cast<float>(s);
    want_dx[i] = static_cast<float>(1.0 + dyv[i] * s * (1.0 - s));
  }
  require_close(y, want_y, 1e-6, 1e-6, "sigmoid forward");
  require_close(dx, want_dx, 1e-6, 1e-6, "sigmoid backward");
  // Write mode into NaN (an uninitialised buffer) equals accumulating into zeros.
  std::vector<float> dxw(n, std::nanf("")), dxz(n, 0.0f);
  kernels::sigmoid_backward_cpu(n, y.data(), dyv.data(), dxw.data(), true);
  kernels::sigmoid_backward_cpu(n, y.data(), dyv.data(), dxz.data());
  CHECK(dxw == dxz);

  kernels::fill_cpu(n, 2.5f, y.data());
  CHECK(std::count(y.begin(), y.end(), 2.5f) == n);
  kernels::accumulate_cpu(n, xv.data(), y.data());
  bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += y[i] != 2.5f + xv[i];
  CHECK(bad == 0);
}

TEST_CASE("vectorised sigmoid matches the plain std::exp loop and double", "[elementwise]") {
  // The polynomial exp (~1 ulp) against the plain loop and against double,
  // under the file's rule: the whole range of float inputs that give a
  // result other than 0 or 1 and beyond, lengths that leave vector tails,
  // one and two threads' worth.
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{(1 << 16) + 3}}) {
    INFO("n=" << n);
    const auto x = random_tensor({n}, 21, -95.0f, 95.0f).to_vector();
    std::vector<float> y(n), y_plain(n), want(n);
    kernels::sigmoid_forward_cpu(n, x.data(), y.data());
    kernels::sigmoid_forward_cpu_plain(n, x.data(), y_plain.data());
    for (int64_t i = 0; i < n; ++i)
      want[i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(x[i]))));
    require_close(y, want, 1e-6, 1e-6, "sigmoid (vectorised)");
    require_close(y_plain, want, 1e-6, 1e-6, "sigmoid (plain)");
  }
  // The edges of the exp's range and special values: the same answers as std::exp.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {-inf, inf,   -1000.0f, 1000.0f, -89.5f, -88.5f, -88.0f, -87.0f,
                                87.0f, 88.0f, 88.5f,    89.5f,   -0.0f,  0.0f,   -17.0f, 17.0f};
  std::vector<float> y(x.size()), y_plain(x.size());
  kernels::sigmoid_forward_cpu(static_cast<int64_t>(x.size()), x.data(), y.data());
  kernels::sigmoid_forward_cpu_plain(static_cast<int64_t>(x.size()), x.data(), y_plain.data());
  require_close(y, y_plain, 1e-6, 1e-6, "sigmoid edges");
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == 1.0f);
  CHECK(y[2] == 0.0f);
  CHECK(y[3] == 1.0f);
  CHECK(y[12] == 0.5f);
  CHECK(y[13] == 0.5f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float yn = 0.0f;
  kernels::sigmoid_forward_cpu(1, &nan, &yn);
  CHECK(std::isnan(yn));
}

TEST_CASE("accumulate adds in place through the op", "[elementwise]") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3});
  Tensor y = Tensor::from_vector<float>({10, 20, 30}, {3});
  accumulate(x, y);
  CHECK(y.to_vector() == std::vector<float>{11, 22, 33});
}

TEST_CASE("pointwise ops reject mismatched shapes and dtypes", "[elementwise][errors]") {
  Tensor a = random_tensor({2, 3}, 1), b = random_tensor({3, 2}, 2);
  CHECK_THROWS_AS(add(a, b), ShapeError);
  CHECK_THROWS_WITH(add(a, b), Catch::Contains("add") && Catch::Contains("(3, 2)"));
  CHECK_THROWS_AS(accumulate(a, b), ShapeError);
  CHECK_THROWS_WITH(accumulate(a, b), Catch::Contains("accumulate"));
  Tensor i = Tensor::zeros({2, 3}, Device::cpu(), DType::I32);
  CHECK_THROWS_WITH(relu(i), Catch::Contains("relu") && Catch::Contains("int32"));
  CHECK_THROWS_AS(sigmoid(i), ShapeError);
  CHECK_THROWS_AS(relu(Tensor()), ShapeError);
}
