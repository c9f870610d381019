// Max / average / global-average pooling on the CPU, through the ops API.
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Gradients: check_gradient's rule with the reduction length = window size
// (R*S) or the plane size (global pool). Hand cases are sums of a few exact
// small integers: they must match to float rounding (1e-6 relative).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/pool2d.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;

namespace {

// Values in (-1, 1), distinct within each plane and at least 2/HW apart, so a
// finite-difference step of 1e-2 never changes which element wins a max-pool
// window (planes of up to 81 values: spacing > 0.024 > 2h).
Tensor distinct_planes(int N, int C, int H, int W, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v;
  const int hw = H * W;
  for (int plane = 0; plane < N * C; ++plane) {
    const std::vector<int32_t> perm = g.permutation(hw);
    for (int k : perm) v.push_back(-1.0f + 2.0f * (static_cast<float>(k) + 0.5f) / hw);
  }
  return Tensor::from_vector(v, {N, C, H, W});
}

Tensor iota_plane(int H, int W, float start = 1.0f) {
  std::vector<float> v(static_cast<std::size_t>(H * W));
  std::iota(v.begin(), v.end(), start);
  return Tensor::from_vector(v, {1, 1, H, W});
}

}  // namespace

TEST_CASE("max_pool2d gradient matches finite differences", "[pool]") {
  struct Case {
    int N, C, H, W, k, s, pad;
  };
  for (Case c : {Case{2, 2, 5, 5, 2, 2, 0}, Case{1, 2, 7, 7, 3, 2, 1}, Case{2, 1, 6, 7, 3, 1, 1},
                 Case{1, 3, 9, 9, 3, 3, 0}, Case{2, 1, 5, 6, 2, 1, 1}}) {
    INFO("N C H W k s pad = " << c.N << " " << c.C << " " << c.H << " " << c.W << " " << c.k << " "
                              << c.s << " " << c.pad);
    Tensor x = distinct_planes(c.N, c.C, c.H, c.W, 11 + c.H);
    x.set_requires_grad(true);
    check_gradient([&] { return max_pool2d(x, c.k, c.s, c.pad); }, x, c.k * c.k, "max_pool2d dx");
  }
}

TEST_CASE("avg_pool2d gradient matches finite differences", "[pool]") {
  struct Case {
    int N, C, H, W, k, s, pad;
  };
  for (Case c : {Case{2, 2, 4, 4, 2, 2, 0}, Case{1, 2, 7, 7, 3, 2, 1}, Case{2, 1, 5, 6, 3, 1, 1},
                 Case{1, 1, 9, 9, 5, 2, 2}}) {
    INFO("N C H W k s pad = " << c.N << " " << c.C << " " << c.H << " " << c.W << " " << c.k << " "
                              << c.s << " " << c.pad);
    Tensor x = random_tensor({c.N, c.C, c.H, c.W}, 21 + c.k);
    x.set_requires_grad(true);
    check_gradient([&] { return avg_pool2d(x, c.k, c.s, c.pad); }, x, c.k * c.k, "avg_pool2d dx");
  }
}

TEST_CASE("global_avg_pool gradient matches finite differences", "[pool]") {
  Tensor x = random_tensor({2, 3, 5, 3}, 5);
  x.set_requires_grad(true);
  check_gradient([&] { return global_avg_pool(x); }, x, 15, "global_avg_pool dx");
}

TEST_CASE("max_pool2d with padding: hand-computed values and routing", "[pool]") {
  // 1..9 in a 3x3 plane, 3x3 windows, stride 1, padding 1: each output is the
  // largest neighbour; the padding never wins.
  Tensor x = iota_plane(3, 3);
  x.set_requires_grad(true);
  Tensor y = max_pool2d(x, 3, 1, 1);
  REQUIRE(y.shape() == Shape{1, 1, 3, 3});
  CHECK(y.to_vector() == std::vector<float>{5, 6, 6, 8, 9, 9, 8, 9, 9});
  y.backward(Tensor::full(y.shape(), 1.0f));
  // Element 5 wins once, 6 and 8 twice, 9 four times.
  CHECK(x.grad().to_vector() == std::vector<float>{0, 0, 0, 0, 1, 2, 0, 2, 4});

  // All-negative input with padding: the padding (-inf) must not produce 0.
  Tensor neg = iota_plane(3, 3, -9.0f);  // -9 .. -1
  Tensor yn = max_pool2d(neg, 2, 2, 1);
  REQUIRE(yn.shape() == Shape{1, 1, 2, 2});
  CHECK(yn.to_vector() == std::vector<float>{-9, -7, -3, -1});
}

TEST_CASE("max_pool2d ties go to the first maximum", "[pool]") {
  Tensor x = Tensor::full({1, 1, 2, 2}, 3.0f);
  x.set_requires_grad(true);
  Tensor y = max_pool2d(x, 2, 2);
  y.backward(Tensor::full(y.shape(), 1.0f));
  CHECK(x.grad().to_vector() == std::vector<float>{1, 0, 0, 0});
}

TEST_CASE("max_pool2d propagates NaN: the first NaN of a window wins", "[pool]") {
  // As PyTorch's CPU kernel: a NaN beats any number, and once a window holds
  // a NaN neither a later NaN nor a larger number replaces it.
  //   row 0:   1  9  nan  5
  //   row 1: nan  2  nan  7      2x2 windows, stride 2 (row 2 is left over)
  //   row 2:   4  6    3  8
  // Window 0 (1, 9, nan, 2): the NaN after the maximum wins, flat index 4.
  // Window 1 (nan, 5, nan, 7): the first of two NaNs, flat index 2.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x4 = Tensor::from_vector<float>({1, 9, nan, 5, nan, 2, nan, 7, 4, 6, 3, 8}, {1, 1, 3, 4});
  x4.set_requires_grad(true);
  Tensor y4 = max_pool2d(x4, 2, 2);
  const std::vector<float> out = y4.to_vector();
  REQUIRE(out.size() == 2);
  CHECK(std::isnan(out[0]));
  CHECK(std::isnan(out[1]));
  y4.backward(Tensor::full(y4.shape(), 1.0f));
  const std::vector<float> g = x4.grad().to_vector();
  std::vector<float> want(12, 0.0f);
  want[4] = 1.0f;
  want[2] = 1.0f;
  CHECK(g == want);
}

TEST_CASE("avg_pool2d with padding divides by the full window", "[pool]") {
  // count_include_pad=True: every window divides by 9, padded or not.
  Tensor x = iota_plane(3, 3);
  Tensor y = avg_pool2d(x, 3, 1, 1);
  const std::vector<float> sums{12, 21, 16, 27, 45, 33, 24, 39, 28};
  std::vector<float> want;
  for (float s : sums) want.push_back(s / 9.0f);
  require_close(y.to_vector(), want, 1e-6, 1e-6, "avg_pool2d padded");

  // Backward: each input receives dy/9 from every window that covers it.
  Tensor xg = iota_plane(3, 3);
  xg.set_requires_grad(true);
  Tensor yg = avg_pool2d(xg, 3, 1, 1);
  yg.backward(Tensor::full(yg.shape(), 9.0f));
  // Corner covered by 4 windows, edge by 6, centre by 9.
  require_close(xg.grad().to_vector(), {4, 6, 4, 6, 9, 6, 4, 6, 4}, 1e-6, 1e-6,
                "avg_pool2d padded backward");
}

TEST_CASE("avg_pool2d backward conserves gradient mass when windows tile", "[pool]") {
  Tensor x = random_tensor({3, 2, 8, 6}, 3);
  x.set_requires_grad(true);
  Tensor y = avg_pool2d(x, 2, 2);
  Tensor gy = random_tensor(y.shape(), 4);
  y.backward(gy);
  const auto gx = x.grad().to_vector(), g = gy.to_vector();
  const double sx = std::accumulate(gx.begin(), gx.end(), 0.0);
  const double sy = std::accumulate(g.begin(), g.end(), 0.0);
  // Sums of 288 terms of size <= 1: float rounding, 1e-5 relative is ample.
  CHECK(std::fabs(sx - sy) <= 1e-5 + 1e-5 * std::fabs(sy));
  // Forward: the mean of a tiled input equals the mean of the pooled output.
  const auto xv = x.to_vector(), yv = y.to_vector();
  const double mx = std::accumulate(xv.begin(), xv.end(), 0.0) / xv.size();
  const double my = std::accumulate(yv.begin(), yv.end(), 0.0) / yv.size();
  CHECK(std::fabs(mx - my) <= 1e-6);
}

TEST_CASE("max_pool2d fast path equals the plain loops bit for bit", "[pool]") {
  // Values and argmax: ResNet's 3x3 stride-2 pad-1 pool, AlexNet's 3x3
  // stride 2, LeNet-like 2x2, stride 1 and 3, rows longer than one run of 64
  // outputs, maps where no window lies inside; data rounded to a few levels
  // so windows hold ties (the first maximum must win), with NaNs and
  // infinities sprinkled in (a NaN must win its window).
  struct Case {
    int N, C, H, W, R, stride, pad;
  };
  for (const Case& c : {Case{2, 3, 48, 48, 3, 2, 1}, Case{2, 2, 27, 27, 3, 2, 0},
                        Case{3, 2, 28, 28, 2, 2, 0}, Case{2, 2, 8, 64, 2, 2, 0},
                        Case{1, 2, 9, 140, 3, 1, 1},
                        Case{2, 1, 11, 200, 3, 3, 1}, Case{1, 1, 3, 3, 3, 2, 1},
                        Case{1, 2, 5, 7, 2, 1, 1}}) {
    INFO("N=" << c.N << " C=" << c.C << " H=" << c.H << " W=" << c.W << " R=" << c.R
              << " stride=" << c.stride << " pad=" << c.pad);
    const auto p = kernels::pool2d_params("max_pool2d", c.N, c.C, c.H, c.W, c.R, c.R, c.stride,
                                          c.pad);
    auto x = random_tensor({c.N, c.C, c.H, c.W}, 21).to_vector();
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = std::round(x[i] * 3.0f);  // a handful of levels: ties everywhere
      if (i % 97 == 5) x[i] = std::nanf("");
      if (i % 89 == 7) x[i] = -std::numeric_limits<float>::infinity();
      if (i % 173 == 11) x[i] = std::numeric_limits<float>::infinity();
    }
    const std::size_t out = static_cast<std::size_t>(c.N) * c.C * p.P * p.Q;
    std::vector<float> y(out, 7.0f), y_plain(out, -7.0f);
    std::vector<int32_t> a(out, -1), a_plain(out, -2);
    kernels::max_pool2d_forward_cpu(p, x.data(), y.data(), a.data());
    kernels::max_pool2d_forward_cpu_plain(p, x.data(), y_plain.data(), a_plain.data());
    CHECK(a == a_plain);
    // Equal as bits (NaN == NaN here).
    CHECK(std::memcmp(y.data(), y_plain.data(), out * sizeof(float)) == 0);
  }
}

TEST_CASE("avg_pool2d fast path for tiling windows equals the plain loops bit for bit", "[pool]") {
  // The fast path adds each window in the plain loops' order, so equality is
  // exact: LeNet's 2x2 maps, odd sizes whose last row / column no window
  // reaches, a 3x3 stride 3 window, batch 1; and the overlapping or padded
  // windows that must not take it.
  struct Case {
    int N, C, H, W, R, stride, pad;
  };
  for (const Case& c : {Case{4, 6, 28, 28, 2, 2, 0}, Case{1, 1, 7, 9, 2, 2, 0},
                        Case{2, 3, 10, 11, 3, 3, 0}, Case{3, 2, 5, 5, 5, 5, 0},
                        Case{2, 2, 9, 8, 3, 2, 1}, Case{1, 3, 6, 7, 2, 1, 0}}) {
    INFO("N=" << c.N << " C=" << c.C << " H=" << c.H << " W=" << c.W << " R=" << c.R
              << " stride=" << c.stride << " pad=" << c.pad);
    const auto p = kernels::pool2d_params("avg_pool2d", c.N, c.C, c.H, c.W, c.R, c.R, c.stride,
                                          c.pad);
    const auto x = random_tensor({c.N, c.C, c.H, c.W}, 11).to_vector();
    const auto dy = random_tensor({c.N, c.C, p.P, p.Q}, 12).to_vector();
    const auto dx0 = random_tensor({c.N, c.C, c.H, c.W}, 13).to_vector();
    std::vector<float> y(dy.size(), 7.0f), y_plain(dy.size(), -7.0f), dx = dx0, dx_plain = dx0;
    kernels::avg_pool2d_forward_cpu(p, x.data(), y.data());
    kernels::avg_pool2d_forward_cpu_plain(p, x.data(), y_plain.data());
    CHECK(y == y_plain);
    kernels::avg_pool2d_backward_cpu(p, dy.data(), dx.data());
    kernels::avg_pool2d_backward_cpu_plain(p, dy.data(), dx_plain.data());
    CHECK(dx == dx_plain);
    // Write mode into NaN (an uninitialised buffer): every element set, the
    // uncovered ones to 0, equal to accumulating into zeros.
    const std::vector<float> zeros(dx0.size(), 0.0f);
    std::vector<float> dxz = zeros, dxw(dx0.size(), std::nanf("")), dxw_plain = dxw;
    kernels::avg_pool2d_backward_cpu_plain(p, dy.data(), dxz.data());
    kernels::avg_pool2d_backward_cpu(p, dy.data(), dxw.data(), true);
    kernels::avg_pool2d_backward_cpu_plain(p, dy.data(), dxw_plain.data(), true);
    CHECK(dxw == dxz);
    CHECK(dxw_plain == dxz);
  }
}

TEST_CASE("global_avg_pool backward in write mode sets every element", "[pool]") {
  const int planes = 3, hw = 5;
  const auto dy = random_tensor({planes}, 14).to_vector();
  std::vector<float> dxz(planes * hw, 0.0f), dxw(planes * hw, std::nanf(""));
  kernels::global_avg_pool_backward_cpu(planes, hw, dy.data(), dxz.data());
  kernels::global_avg_pool_backward_cpu(planes, hw, dy.data(), dxw.data(), true);
  CHECK(dxw == dxz);
}

TEST_CASE("global_avg_pool averages each plane", "[pool]") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 10, 20, 30, 40}, {1, 2, 2, 2});
  Tensor y = global_avg_pool(x);
  REQUIRE(y.shape() == Shape{1, 2, 1, 1});
  CHECK(y.to_vector() == std::vector<float>{2.5f, 25.0f});
}

TEST_CASE("pooling output shapes follow PyTorch (ceil_mode=False)", "[pool]") {
  Tensor x = random_tensor({2, 3, 7, 7}, 1);
  CHECK(max_pool2d(x, 3, 2, 1).shape() == Shape{2, 3, 4, 4});
  CHECK(max_pool2d(x, 2, 2).shape() == Shape{2, 3, 3, 3});  // last row dropped
  CHECK(avg_pool2d(x, 3, 1).shape() == Shape{2, 3, 5, 5});
}

TEST_CASE("pooling rejects bad arguments with the op's name", "[pool][errors]") {
  Tensor x = random_tensor({1, 2, 4, 4}, 1);
  CHECK_THROWS_AS(max_pool2d(x, 2, 2, 2), ShapeError);  // padding > kernel / 2
  CHECK_THROWS_WITH(max_pool2d(x, 2, 2, 2),
                    Catch::Contains("max_pool2d") && Catch::Contains("padding"));
  CHECK_THROWS_WITH(avg_pool2d(x, 3, 0),
                    Catch::Contains("avg_pool2d") && Catch::Contains("stride"));
  CHECK_THROWS_AS(avg_pool2d(x, 5, 1), ShapeError);  // kernel larger than input
  CHECK_THROWS_WITH(avg_pool2d(x, 5, 1), Catch::Contains("avg_pool2d") && Catch::Contains("5x5"));
  Tensor x3 = random_tensor({2, 4, 4}, 1);
  CHECK_THROWS_AS(max_pool2d(x3, 2, 2), ShapeError);
  CHECK_THROWS_WITH(max_pool2d(x3, 2, 2),
                    Catch::Contains("max_pool2d") && Catch::Contains("(2, 4, 4)"));
  CHECK_THROWS_WITH(global_avg_pool(x3), Catch::Contains("global_avg_pool"));
  CHECK_THROWS_AS(max_pool2d(x, 0, 1), ShapeError);
}
