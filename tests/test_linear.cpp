// linear through the ops API (core/ops.h) on the CPU: a hand-computed layer,
// central finite-difference gradient checks, a sweep against a double
// reference, the accumulate (+=) contract, and bad input.
//
// Tolerance rule: |got - want| <= atol + rtol*|want|.
//  - gradient checks: test_helpers.h check_gradient, atol = rtol =
//    2e-3 * sqrt(L/16 + 1), L = OUT for dx, N for dw and db;
//  - float kernels vs the double reference: atol = rtol = 1e-5 * sqrt(L/16 + 1)
//    (float rounding ~6e-8 relative per term, random-walk growth over L terms
//    of magnitude <= 1, ~10x margin);
//  - the hand case uses values exact in float: compared exactly.
//  - accumulate (+=) checks: atol = rtol = 1e-6; starting from 1 instead of 0
//    changes only the rounding of the sums (an ulp or two at |value| < 10).
#include <vector>

#include "kernels/linear.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::plus_one;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;
using scratchnet::testing::ThreadCount;
using scratchnet::testing::tolerance_scale;

TEST_CASE("linear hand case", "[linear]") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
  Tensor w =
      Tensor::from_vector<float>({1, 0, -1, 0.5f, 0.5f, 0.5f}, {2, 3}).set_requires_grad(true);
  Tensor b = Tensor::from_vector<float>({1, -1}, {2}).set_requires_grad(true);
  Tensor y = linear(x, w, b);
  REQUIRE(y.shape() == Shape{2, 2});
  // row 0: 1 - 3 + 1 = -1, 0.5 * 6 - 1 = 2; row 1: 4 - 6 + 1 = -1, 0.5 * 15 - 1 = 6.5
  CHECK(y.to_vector() == std::vector<float>{-1, 2, -1, 6.5f});

  y.backward(Tensor::from_vector<float>({1, 2, 3, -1}, {2, 2}));
  // dx = dy w: row 0 = 1*(1,0,-1) + 2*(.5,.5,.5); row 1 = 3*(1,0,-1) - (.5,.5,.5)
  CHECK(x.grad().to_vector() == std::vector<float>{2, 1, 0, 2.5f, -0.5f, -3.5f});
  // dw = dyᵀ x: row 0 = 1*(1,2,3) + 3*(4,5,6); row 1 = 2*(1,2,3) - (4,5,6)
  CHECK(w.grad().to_vector() == std::vector<float>{13, 17, 21, -2, -1, 0});
  CHECK(b.grad().to_vector() == std::vector<float>{4, 1});
}

TEST_CASE("linear gradients match central differences", "[linear]") {
  struct Case {
    int N, IN, OUT;
    bool bias;
  };
  const Case cases[] = {{4, 7, 5, true}, {1, 3, 9, true}, {3, 16, 1, false}, {5, 1, 4, true}};
  uint64_t seed = 20;
  for (const Case& c : cases) {
    INFO("N=" << c.N << " IN=" << c.IN << " OUT=" << c.OUT << " bias=" << c.bias);
    Tensor x = random_tensor({c.N, c.IN}, seed++).set_requires_grad(true);
    Tensor w = random_tensor({c.OUT, c.IN}, seed++).set_requires_grad(true);
    Tensor b = c.bias ? random_tensor({c.OUT}, seed++).set_requires_grad(true) : Tensor();
    auto f = [&] { return linear(x, w, b); };
    check_gradient(f, x, c.OUT, "dx");
    check_gradient(f, w, c.N, "dw");
    if (c.bias) check_gradient(f, b, c.N, "db");
  }
}

TEST_CASE("linear kernels match a double reference over model-like shapes", "[linear]") {
  // LeNet's and a small classifier head's layers, plus odd sizes.
  const int cases[][3] = {{256, 400, 120}, {256, 120, 84}, {256, 84, 10},
                          {3, 1000, 37},   {129, 65, 1},   {1, 5, 300}};
  uint64_t seed = 40;
  for (const auto& c : cases) {
    const int N = c[0], IN = c[1], OUT = c[2];
    INFO("N=" << N << " IN=" << IN << " OUT=" << OUT);
    const auto p = kernels::linear_params(N, IN, OUT);
    const auto x = random_tensor({N, IN}, seed++).to_vector();
    const auto w = random_tensor({OUT, IN}, seed++).to_vector();
    const auto b = random_tensor({OUT}, seed++).to_vector();
    const auto dy = random_tensor({N, OUT}, seed++).to_vector();
    std::vector<double> y(static_cast<std::size_t>(N) * OUT), dx(x.size()), dw(w.size()), db(OUT);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OUT; ++o) {
        double acc = b[o];
        const double g = dy[static_cast<std::size_t>(n) * OUT + o];
        db[o] += g;
        for (int i = 0; i < IN; ++i) {
          const std::size_t xi = static_cast<std::size_t>(n) * IN + i;
          const std::size_t wi = static_cast<std::size_t>(o) * IN + i;
          acc += static_cast<double>(x[xi]) * w[wi];
          dx[xi] += g * w[wi];
          dw[wi] += g * x[xi];
        }
        y[static_cast<std::size_t>(n) * OUT + o] = acc;
      }
    auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };

    std::vector<float> gy(y.size()), gdx(x.size(), 0.0f), gdw(w.size(), 0.0f), gdb(OUT, 0.0f);
    kernels::linear_forward_cpu(p, x.data(), w.data(), b.data(), gy.data());
    require_close(gy, f(y), 1e-5 * tolerance_scale(IN), 1e-5 * tolerance_scale(IN), "y");
    kernels::linear_backward_data_cpu(p, dy.data(), w.data(), gdx.data());
    require_close(gdx, f(dx), 1e-5 * tolerance_scale(OUT), 1e-5 * tolerance_scale(OUT), "dx");
    kernels::linear_backward_weight_cpu(p, x.data(), dy.data(), gdw.data(), gdb.data());
    require_close(gdw, f(dw), 1e-5 * tolerance_scale(N), 1e-5 * tolerance_scale(N), "dw");
    require_close(gdb, f(db), 1e-5 * tolerance_scale(N), 1e-5 * tolerance_scale(N), "db");
  }
}

TEST_CASE("linear backward kernels accumulate into their outputs", "[linear]") {
  const auto p = kernels::linear_params(3, 5, 4);
  const auto x = random_tensor({3, 5}, 1).to_vector();
  const auto w = random_tensor({4, 5}, 2).to_vector();
  const auto dy = random_tensor({3, 4}, 3).to_vector();
  std::vector<float> dx0(x.size(), 0.0f), dw0(w.size(), 0.0f), db0(4, 0.0f);
  kernels::linear_backward_data_cpu(p, dy.data(), w.data(), dx0.data());
  kernels::linear_backward_weight_cpu(p, x.data(), dy.data(), dw0.data(), db0.data());
  std::vector<float> dx(x.size(), 1.0f), dw(w.size(), 1.0f), db(4, 1.0f);
  kernels::linear_backward_data_cpu(p, dy.data(), w.data(), dx.data());
  kernels::linear_backward_weight_cpu(p, x.data(), dy.data(), dw.data(), db.data());
  require_close(dx, plus_one(dx0), 1e-6, 1e-6, "dx");
  require_close(dw, plus_one(dw0), 1e-6, 1e-6, "dw");
  require_close(db, plus_one(db0), 1e-6, 1e-6, "db");
  std::vector<float> dw2(w.size(), 0.0f);
  kernels::linear_backward_weight_cpu(p, x.data(), dy.data(), dw2.data(), nullptr);
  CHECK(dw2 == dw0);
}

TEST_CASE("linear rejects bad input with a ShapeError naming the op", "[linear]") {
  Tensor x = Tensor::zeros({2, 5});
  Tensor w = Tensor::zeros({3, 5});
  Tensor b = Tensor::zeros({3});
  using Catch::Contains;
  CHECK_NOTHROW(linear(x, w, b));
  CHECK_NOTHROW(linear(x, w, Tensor()));
  // wrong ndim
  CHECK_THROWS_AS(linear(Tensor::zeros({2, 5, 1}), w, b), ShapeError);
  CHECK_THROWS_WITH(linear(Tensor::zeros({2, 5, 1}), w, b),
                    Contains("linear") && Contains("(2, 5, 1)"));
  CHECK_THROWS_AS(linear(x, Tensor::zeros({15}), b), ShapeError);
  // in_features mismatch
  CHECK_THROWS_AS(linear(x, Tensor::zeros({3, 4}), b), ShapeError);
  CHECK_THROWS_WITH(linear(x, Tensor::zeros({3, 4}), b), Contains("linear") && Contains("(3, 4)"));
  // bias shape mismatch
  CHECK_THROWS_AS(linear(x, w, Tensor::zeros({4})), ShapeError);
  CHECK_THROWS_WITH(linear(x, w, Tensor::zeros({4})), Contains("linear") && Contains("(4,)"));
  CHECK_THROWS_AS(linear(x, w, Tensor::zeros({1, 3})), ShapeError);
  // empty batch
  CHECK_THROWS_AS(linear(Tensor::zeros({0, 5}), w, b), ShapeError);
  // wrong dtype
  CHECK_THROWS_AS(linear(Tensor::zeros({2, 5}, Device::cpu(), DType::I32), w, b), ShapeError);
}

TEST_CASE("linear forward for small batches gives the plain GEMM's bits", "[linear]") {
  // Batches up to 64 against 4x as many outputs take the transposed form
  // (yᵀ = w xᵀ); the plain one (y = x wᵀ) is the reference, compared with ==
  // since every output sums the same products in the same order. Depths past
  // one GEMM depth slice (384), odd sizes, one image, with and without bias.
  const ThreadCount threads(GENERATE(1, 2));
  const int cases[][3] = {{32, 1000, 700}, {5, 300, 1100}, {1, 50, 64}, {64, 129, 256},
                          {3, 777, 13}};
  uint64_t seed = 400;
  for (const auto& c : cases) {
    const int N = c[0], IN = c[1], OUT = c[2];
    INFO("N=" << N << " IN=" << IN << " OUT=" << OUT);
    const auto p = kernels::linear_params(N, IN, OUT);
    const auto x = random_tensor({N, IN}, seed++).to_vector();
    const auto w = random_tensor({OUT, IN}, seed++).to_vector();
    const auto b = random_tensor({OUT}, seed++).to_vector();
    for (const float* bias : {b.data(), static_cast<const float*>(nullptr)}) {
      std::vector<float> got(static_cast<std::size_t>(N) * OUT, -1.0f), want(got.size(), 2.0f);
      kernels::linear_forward_cpu(p, x.data(), w.data(), bias, got.data());
      kernels::linear_forward_cpu_plain(p, x.data(), w.data(), bias, want.data());
      CHECK(got == want);
    }
  }
}
