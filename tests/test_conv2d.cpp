// conv2d through the ops API (core/ops.h) on the CPU: hand-computed cases,
// central finite-difference gradient checks of input, weight and bias, a
// sweep against a direct (non-im2col) convolution in double, the
// accumulate (+=) contract of the backward kernels, and bad input.
//
// Tolerance rule: |got - want| <= atol + rtol*|want|.
//  - gradient checks: test_helpers.h check_gradient, atol = rtol =
//    2e-3 * sqrt(L/16 + 1) with L the reduction length of that gradient
//    (K*R*S for dx, N*P*Q for dw and db);
//  - float kernels vs the double direct convolution: atol = rtol =
//    1e-5 * sqrt(L/16 + 1) (float rounding ~6e-8 relative per term, grown
//    like a random walk over L terms of magnitude <= 1, with ~10x margin);
//  - hand cases use small integers, exact in float: compared exactly.
//  - accumulate (+=) checks: atol = rtol = 1e-6; starting from 1 instead of 0
//    changes only the rounding of the sums (an ulp or two at |value| < 10).
#include <cmath>
#include <vector>

#include "kernels/conv2d.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::plus_one;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;
using scratchnet::testing::ThreadCount;
using scratchnet::testing::tolerance_scale;

namespace {

std::vector<float> iota(int n, float start = 1.0f) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

// Direct convolution in double: y, dx, dw, db for one dy, straight from the
// definition y[n,k,p,q] = b[k] + Σ w[k,c,r,s] x[n,c,p*st-pad+r,q*st-pad+s].
struct DirectConv {
  std::vector<float> y, dx, dw, db;
};

DirectConv direct_conv(const kernels::Conv2dParams& p, const std::vector<float>& x,
                       const std::vector<float>& w, const std::vector<float>& b,
                       const std::vector<float>& dy) {
  std::vector<double> y(static_cast<std::size_t>(p.N) * p.K * p.P * p.Q);
  std::vector<double> dx(x.size()), dw(w.size()), db(p.K);
  auto X = [&](int n, int c, int h, int ww) { return ((n * p.C + c) * p.H + h) * p.W + ww; };
  auto Wi = [&](int k, int c, int r, int s) { return ((k * p.C + c) * p.R + r) * p.S + s; };
  for (int n = 0; n < p.N; ++n)
    for (int k = 0; k < p.K; ++k)
      for (int oh = 0; oh < p.P; ++oh)
        for (int ow = 0; ow < p.Q; ++ow) {
          const int yi = ((n * p.K + k) * p.P + oh) * p.Q + ow;
          double acc = b.empty() ? 0.0 : b[k];
          const double g = dy[yi];
          db[k] += g;
          for (int c = 0; c < p.C; ++c)
            for (int r = 0; r < p.R; ++r)
              for (int s = 0; s < p.S; ++s) {
                const int ih = oh * p.stride - p.pad + r, iw = ow * p.stride - p.pad + s;
                if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                acc += static_cast<double>(w[Wi(k, c, r, s)]) * x[X(n, c, ih, iw)];
                dx[X(n, c, ih, iw)] += g * w[Wi(k, c, r, s)];
                dw[Wi(k, c, r, s)] += g * x[X(n, c, ih, iw)];
              }
          y[yi] = acc;
        }
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  return {f(y), f(dx), f(dw), f(db)};
}

}  // namespace

TEST_CASE("conv2d hand case: 3x3 filter over a 4x4 input", "[conv2d]") {
  // x[i][j] = 4i + j + 1; the filter picks x[p][q] + 2 x[p][q+1] + x[p+1][q+1]
  // - x[p+2][q+2], which for this x is 12p + 3q; plus bias 0.5.
  Tensor x = Tensor::from_vector(iota(16), {1, 1, 4, 4}).set_requires_grad(true);
  Tensor w = Tensor::from_vector<float>({1, 2, 0, 0, 1, 0, 0, 0, -1}, {1, 1, 3, 3})
                 .set_requires_grad(true);
  Tensor b = Tensor::from_vector<float>({0.5f}, {1}).set_requires_grad(true);
  Tensor y = conv2d(x, w, b, 1, 0);
  REQUIRE(y.shape() == Shape{1, 1, 2, 2});
  CHECK(y.to_vector() == std::vector<float>{0.5f, 3.5f, 12.5f, 15.5f});

  y.backward(Tensor::full({1, 1, 2, 2}, 1.0f));
  // dw[r][s] = sum of the 2x2 block of x at (r, s) = 16r + 4s + 14; db = 4.
  CHECK(w.grad().to_vector() == std::vector<float>{14, 18, 22, 30, 34, 38, 46, 50, 54});
  CHECK(b.grad().to_vector() == std::vector<float>{4});
  // dx[i][j] = Σ over the outputs whose window covers (i, j) of the tap there.
  CHECK(x.grad().to_vector() == std::vector<float>{1, 3, 2, 0,   //
                                                   1, 4, 3, 0,   //
                                                   0, 1, 0, -1,  //
                                                   0, 0, -1, -1});
}

TEST_CASE("conv2d hand case: stride 2 with padding 1", "[conv2d]") {
  // Windows start at (2p-1, 2q-1); outside the 4x4 input counts as 0.
  Tensor x = Tensor::from_vector(iota(16), {1, 1, 4, 4});
  Tensor w = Tensor::from_vector<float>({1, 2, 0, 0, 1, 0, 0, 0, -1}, {1, 1, 3, 3});
  Tensor b = Tensor::from_vector<float>({0.5f}, {1});
  Tensor y = conv2d(x, w, b, 2, 1);
  REQUIRE(y.shape() == Shape{1, 1, 2, 2});
  //   (0,0): 0 + 0 + x00 - x11 = 1 - 6      (0,1): 0 + 0 + x02 - x13 = 3 - 8
  //   (1,0): 0 + 2 x10 + x20 - x31 = 10 + 9 - 14
  //   (1,1): x11 + 2 x12 + x22 - x33 = 6 + 14 + 11 - 16
  CHECK(y.to_vector() == std::vector<float>{-4.5f, -4.5f, 5.5f, 15.5f});
}

TEST_CASE("conv2d hand case: channels mix and filters separate", "[conv2d]") {
  // 1x1 filters over 2 channels: y_k = w_k0 x_0 + w_k1 x_1 (+ no bias).
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 10, 20, 30, 40}, {1, 2, 2, 2});
  Tensor w = Tensor::from_vector<float>({1, 1, 2, -1, 0, 0.5f}, {3, 2, 1, 1});
  Tensor y = conv2d(x, w, Tensor(), 1, 0);
  REQUIRE(y.shape() == Shape{1, 3, 2, 2});
  CHECK(y.to_vector() == std::vector<float>{11, 22, 33, 44,     //
                                            -8, -16, -24, -32,  //
                                            5, 10, 15, 20});
}

TEST_CASE("conv2d gradients match central differences", "[conv2d]") {
  struct Case {
    int N, C, H, W, K, R, S, stride, pad;
    bool bias;
  };
  const Case cases[] = {
      {2, 3, 5, 5, 4, 3, 3, 1, 1, true},   // same padding
      {1, 2, 7, 6, 3, 3, 3, 2, 0, true},   // stride 2, odd sizes, batch 1
      {2, 1, 6, 7, 2, 2, 3, 2, 1, false},  // R != S, stride 2, pad, no bias
      {1, 3, 5, 4, 2, 1, 1, 1, 0, true},   // 1x1
      {2, 2, 4, 5, 3, 4, 2, 1, 2, true},   // pad 2 with a tall kernel
      {1, 1, 3, 3, 1, 3, 3, 3, 0, false},  // kernel == input, one output
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    INFO("N=" << c.N << " C=" << c.C << " H=" << c.H << " W=" << c.W << " K=" << c.K << " R=" << c.R
              << " S=" << c.S << " stride=" << c.stride << " pad=" << c.pad << " bias=" << c.bias);
    Tensor x = random_tensor({c.N, c.C, c.H, c.W}, seed++).set_requires_grad(true);
    Tensor w = random_tensor({c.K, c.C, c.R, c.S}, seed++).set_requires_grad(true);
    Tensor b = c.bias ? random_tensor({c.K}, seed++).set_requires_grad(true) : Tensor();
    auto f = [&] { return conv2d(x, w, b, c.stride, c.pad); };
    const auto p = kernels::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad);
    check_gradient(f, x, c.K * c.R * c.S, "dx");
    check_gradient(f, w, c.N * p.P * p.Q, "dw");
    if (c.bias) check_gradient(f, b, c.N * p.P * p.Q, "db");
  }
}

TEST_CASE("conv2d kernels match a direct convolution over model-like shapes", "[conv2d]") {
  // Larger than the gradient checks, so the GEMM's blocked paths and the
  // batch-parallel im2col are exercised: LeNet, AlexNet-ish and VGG-ish layers
  // at reduced size, plus odd leftovers. Run with 1, 2 and 3 threads: the CPU
  // kernels parallelise over the batch when every thread gets an image and
  // inside the GEMMs otherwise, and both paths must agree with the reference.
  const int threads = GENERATE(1, 2, 3);
  const ThreadCount thread_count(threads);
  // Images per GEMM group: the kernels' choice (several images side by side
  // when the maps are small), one (the per-image GEMMs), or three (short
  // last groups).
  const int group_cap = GENERATE(0, 1, 3);
  struct GroupCap {
    explicit GroupCap(int n) { kernels::conv2d_cpu_cap_group_images_for_testing(n); }
    ~GroupCap() { kernels::conv2d_cpu_cap_group_images_for_testing(0); }
  } cap(group_cap);
  struct Case {
    int N, C, H, W, K, R, S, stride, pad;
  };
  const Case cases[] = {
      {3, 1, 28, 28, 6, 5, 5, 1, 2},
      {3, 6, 14, 14, 16, 5, 5, 1, 0},
      {2, 3, 23, 23, 8, 11, 11, 4, 2},
      {2, 16, 9, 9, 33, 3, 3, 1, 1},
      {5, 7, 10, 13, 5, 3, 2, 2, 1},
      {1, 64, 6, 6, 70, 3, 3, 1, 1},
      // ResNet's small maps (3x3, 6x6, a 1x1 stride-2 shortcut) and a
      // pointwise filter, with enough images to be grouped, N not a multiple
      // of the group.
      {11, 16, 3, 3, 20, 3, 3, 1, 1},
      {7, 12, 6, 6, 13, 3, 3, 1, 1},
      {9, 8, 7, 7, 12, 1, 1, 2, 0},
      {6, 8, 4, 4, 6, 1, 1, 1, 0},
      // For the tap GEMMs: 5x5 with padding 2 on a small map, a stride-2
      // 3x3 onto 3x3 (ResNet's stage entry), a 2x2 filter no tap of which
      // sees the whole map, 5x5 on a map so small that a tap sees nothing,
      // and enough channels for the kernels' own choice to take them.
      {4, 10, 5, 5, 9, 5, 5, 1, 2},
      {5, 9, 6, 6, 11, 3, 3, 2, 1},
      {3, 5, 4, 4, 6, 2, 2, 1, 1},
      {3, 4, 2, 3, 5, 5, 5, 1, 2},
      {4, 128, 3, 3, 16, 3, 3, 1, 1},
  };
  uint64_t seed = 50;
  for (const Case& c : cases) {
    INFO("threads=" << threads << " group_cap=" << group_cap << " N=" << c.N << " C=" << c.C
                    << " H=" << c.H << " W=" << c.W << " K=" << c.K << " R=" << c.R << " S=" << c.S
                    << " stride=" << c.stride << " pad=" << c.pad);
    const auto p = kernels::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.pad);
    const auto x = random_tensor({c.N, c.C, c.H, c.W}, seed++).to_vector();
    const auto w = random_tensor({c.K, c.C, c.R, c.S}, seed++).to_vector();
    const auto b = random_tensor({c.K}, seed++).to_vector();
    const auto dy = random_tensor({c.N, c.K, p.P, p.Q}, seed++).to_vector();
    const DirectConv want = direct_conv(p, x, w, b, dy);

    std::vector<float> y(want.y.size());
    kernels::conv2d_forward_cpu(p, x.data(), w.data(), b.data(), y.data());
    const double ty = 1e-5 * tolerance_scale(c.C * c.R * c.S);
    require_close(y, want.y, ty, ty, "y");
    std::vector<float> dx(x.size(), 0.0f), dw(w.size(), 0.0f), db(c.K, 0.0f);
    kernels::conv2d_backward_data_cpu(p, dy.data(), w.data(), dx.data());
    const double tx = 1e-5 * tolerance_scale(c.K * c.R * c.S);
    require_close(dx, want.dx, tx, tx, "dx");
    kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), dw.data(), db.data());
    const double tw = 1e-5 * tolerance_scale(c.N * p.P * p.Q);
    require_close(dw, want.dw, tw, tw, "dw");
    require_close(db, want.db, tw, tw, "db");

    {
      // The GEMM path with its columns packed straight from the images
      // (implicit im2col: every forward and weight gradient of path 3) and
      // with the columns matrix built whole (path 1) feeds the same
      // micro-kernel the same numbers in the same order: the same bits.
      struct Gemms {
        std::vector<float> y, dw, db;
      };
      const auto gemm_path = [&](int path) {
        kernels::conv2d_cpu_path_for_testing(path);
        Gemms r{std::vector<float>(want.y.size(), -1.0f), std::vector<float>(w.size(), 0.0f),
                std::vector<float>(c.K, 0.0f)};
        kernels::conv2d_forward_cpu(p, x.data(), w.data(), b.data(), r.y.data());
        kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), r.dw.data(), r.db.data());
        kernels::conv2d_cpu_path_for_testing(0);
        return r;
      };
      const Gemms implicit = gemm_path(3), whole = gemm_path(1);
      CHECK(implicit.y == whole.y);
      CHECK(implicit.dw == whole.dw);
      CHECK(implicit.db == whole.db);
      require_close(implicit.dw, want.dw, tw, tw, "dw (GEMM)");
    }

    {
      // Tap GEMMs (path 4: wherever they apply, whatever the padding share)
      // against the double reference; the backward passes from 1 (+=).
      struct Path {
        Path() { kernels::conv2d_cpu_path_for_testing(4); }
        ~Path() { kernels::conv2d_cpu_path_for_testing(0); }
      } taps;
      std::vector<float> y4(want.y.size(), -1.0f), dx4(x.size(), 1.0f), dw4(w.size(), 1.0f),
          db4(c.K, 1.0f);
      kernels::conv2d_forward_cpu(p, x.data(), w.data(), b.data(), y4.data());
      kernels::conv2d_backward_data_cpu(p, dy.data(), w.data(), dx4.data());
      kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), dw4.data(), db4.data());
      require_close(y4, want.y, ty, ty, "y (tap GEMMs)");
      require_close(dx4, plus_one(want.dx), tx, tx, "dx (tap GEMMs)");
      require_close(dw4, plus_one(want.dw), tw, tw, "dw (tap GEMMs)");
      require_close(db4, plus_one(want.db), tw, tw, "db (tap GEMMs)");
    }

    // The weight gradient sums per-thread partials in a fixed order: the
    // same inputs give the same bits on every run.
    std::vector<float> dw_again(w.size(), 0.0f), db_again(c.K, 0.0f);
    kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), dw_again.data(), db_again.data());
    CHECK(dw_again == dw);
    CHECK(db_again == db);
  }
}

TEST_CASE("conv2d direct kernels match im2col + GEMM and double", "[conv2d]") {
  // The direct kernels (kernels/cpu/conv2d_direct.cpp) forced on, the GEMM
  // path forced on, and the data gradient as a forward convolution with
  // flipped filters forced on, each against the double reference: LeNet's layers (conv1 at
  // batch 1), maps narrower than one vector and wider than two, odd sizes,
  // 3x3 and 5x5, with and without padding, channel counts that leave the
  // 6-filter blocks part empty, on 1 and 2 threads; backward from 1 (+=).
  const int threads = GENERATE(1, 2);
  const ThreadCount thread_count(threads);
  struct Path {
    explicit Path(int path) { kernels::conv2d_cpu_path_for_testing(path); }
    ~Path() { kernels::conv2d_cpu_path_for_testing(0); }
  };
  struct Case {
    int N, C, H, W, K, R, pad;
  };
  const Case cases[] = {{1, 1, 28, 28, 6, 5, 2}, {3, 6, 14, 14, 16, 5, 0},
                        {3, 2, 9, 11, 4, 3, 1},  {2, 1, 7, 5, 3, 5, 2},
                        {5, 3, 20, 37, 5, 5, 0}, {4, 7, 13, 17, 13, 3, 2},
                        {3, 9, 12, 10, 6, 7, 3},  {2, 24, 13, 13, 32, 5, 2}};
  uint64_t seed = 90;
  for (const Case& c : cases) {
    INFO("threads=" << threads << " N=" << c.N << " C=" << c.C << " H=" << c.H << " W=" << c.W
                    << " K=" << c.K << " R=S=" << c.R << " pad=" << c.pad);
    const auto p = kernels::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.R, 1, c.pad);
    const auto x = random_tensor({c.N, c.C, c.H, c.W}, seed++).to_vector();
    const auto w = random_tensor({c.K, c.C, c.R, c.R}, seed++).to_vector();
    const auto b = random_tensor({c.K}, seed++).to_vector();
    const auto dy = random_tensor({c.N, c.K, p.P, p.Q}, seed++).to_vector();
    const DirectConv want = direct_conv(p, x, w, b, dy);
    struct Result {
      std::vector<float> y, dx, dw, db;
    };
    const auto run = [&](int path) {
      const Path forced(path);
      Result r{std::vector<float>(dy.size(), 0.0f), std::vector<float>(x.size(), 1.0f),
               std::vector<float>(w.size(), 1.0f), std::vector<float>(c.K, 1.0f)};
      kernels::conv2d_forward_cpu(p, x.data(), w.data(), b.data(), r.y.data());
      kernels::conv2d_backward_data_cpu(p, dy.data(), w.data(), r.dx.data());
      kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), r.dw.data(), r.db.data());
      return r;
    };
    for (int path : {2, 1, 3}) {
      INFO((path == 2 ? "direct" : path == 1 ? "GEMM" : "dgrad as flipped forward"));
      const Result r = run(path);
      const double ty = 1e-5 * tolerance_scale(c.C * c.R * c.R);
      const double tx = 1e-5 * tolerance_scale(c.K * c.R * c.R);
      const double tw = 1e-5 * tolerance_scale(c.N * p.P * p.Q);
      require_close(r.y, want.y, ty, ty, "y");
      require_close(r.dx, plus_one(want.dx), tx, tx, "dx");
      require_close(r.dw, plus_one(want.dw), tw, tw, "dw");
      require_close(r.db, plus_one(want.db), tw, tw, "db");
    }
  }
}

TEST_CASE("conv2d backward kernels accumulate into their outputs", "[conv2d]") {
  const auto p = kernels::conv2d_params(2, 3, 6, 5, 4, 3, 2, 2, 1);
  const auto x = random_tensor({p.N, p.C, p.H, p.W}, 7).to_vector();
  const auto w = random_tensor({p.K, p.C, p.R, p.S}, 8).to_vector();
  const auto dy = random_tensor({p.N, p.K, p.P, p.Q}, 9).to_vector();
  std::vector<float> dx0(x.size(), 0.0f), dw0(w.size(), 0.0f), db0(p.K, 0.0f);
  kernels::conv2d_backward_data_cpu(p, dy.data(), w.data(), dx0.data());
  kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), dw0.data(), db0.data());

  // Start from 1 instead of 0: each result must be exactly one more.
  std::vector<float> dx(x.size(), 1.0f), dw(w.size(), 1.0f), db(p.K, 1.0f);
  kernels::conv2d_backward_data_cpu(p, dy.data(), w.data(), dx.data());
  kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), dw.data(), db.data());
  require_close(dx, plus_one(dx0), 1e-6, 1e-6, "dx");
  require_close(dw, plus_one(dw0), 1e-6, 1e-6, "dw");
  require_close(db, plus_one(db0), 1e-6, 1e-6, "db");

  // db == nullptr: the weight gradient alone, same values.
  std::vector<float> dw2(w.size(), 0.0f);
  kernels::conv2d_backward_weight_cpu(p, x.data(), dy.data(), dw2.data(), nullptr);
  CHECK(dw2 == dw0);
}

TEST_CASE("conv2d rejects bad input with a ShapeError naming the op", "[conv2d]") {
  Tensor x = Tensor::zeros({2, 3, 8, 8});
  Tensor w = Tensor::zeros({4, 3, 3, 3});
  Tensor b = Tensor::zeros({4});
  using Catch::Contains;
  // wrong ndim
  CHECK_THROWS_AS(conv2d(Tensor::zeros({3, 8, 8}), w, b), ShapeError);
  CHECK_THROWS_WITH(conv2d(Tensor::zeros({3, 8, 8}), w, b),
                    Contains("conv2d") && Contains("(3, 8, 8)"));
  CHECK_THROWS_AS(conv2d(x, Tensor::zeros({4, 3, 9}), b), ShapeError);
  // channel mismatch
  CHECK_THROWS_AS(conv2d(x, Tensor::zeros({4, 2, 3, 3}), b), ShapeError);
  CHECK_THROWS_WITH(conv2d(x, Tensor::zeros({4, 2, 3, 3}), b),
                    Contains("conv2d") && Contains("(4, 2, 3, 3)"));
  // kernel larger than the (padded) input
  CHECK_THROWS_AS(conv2d(x, Tensor::zeros({4, 3, 9, 3}), b), ShapeError);
  CHECK_THROWS_WITH(conv2d(x, Tensor::zeros({4, 3, 9, 3}), b),
                    Contains("conv2d") && Contains("9x3"));
  CHECK_NOTHROW(conv2d(x, Tensor::zeros({4, 3, 9, 3}), b, 1, 1));  // 10x10 padded: fits
  // stride 0, negative stride, negative padding
  CHECK_THROWS_AS(conv2d(x, w, b, 0, 0), ShapeError);
  CHECK_THROWS_WITH(conv2d(x, w, b, 0, 0), Contains("conv2d") && Contains("stride"));
  CHECK_THROWS_AS(conv2d(x, w, b, -1, 0), ShapeError);
  CHECK_THROWS_AS(conv2d(x, w, b, 1, -1), ShapeError);
  CHECK_THROWS_WITH(conv2d(x, w, b, 1, -1), Contains("conv2d") && Contains("-1"));
  // bias shape mismatch
  CHECK_THROWS_AS(conv2d(x, w, Tensor::zeros({3})), ShapeError);
  CHECK_THROWS_WITH(conv2d(x, w, Tensor::zeros({3})), Contains("conv2d") && Contains("(3,)"));
  CHECK_THROWS_AS(conv2d(x, w, Tensor::zeros({4, 1})), ShapeError);
  // empty batch
  CHECK_THROWS_AS(conv2d(Tensor::zeros({0, 3, 8, 8}), w, b), ShapeError);
}
