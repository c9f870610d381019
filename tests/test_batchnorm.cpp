// Batch normalisation on the CPU, PyTorch semantics (BatchNorm1d / 2d).
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Gradients: check_gradient's rule with the reduction length m = N*H*W (the
// statistics sum over m values). Statistics recomputed here in double: the
// kernel sums in double too, so the float results agree to a few ulps:
// atol = rtol = 1e-5 * sqrt(m / 16 + 1).
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;
using scratchnet::testing::ThreadCount;
using scratchnet::testing::tolerance_scale;

namespace {

struct Bn {
  Tensor gamma, beta, rmean, rvar;
  explicit Bn(int C, uint64_t seed) {
    gamma = random_tensor({C}, seed, 0.5f, 1.5f);
    beta = random_tensor({C}, seed + 1, -0.5f, 0.5f);
    rmean = Tensor::zeros({C});
    rvar = Tensor::full({C}, 1.0f);
    gamma.set_requires_grad(true);
    beta.set_requires_grad(true);
  }
  Tensor operator()(const Tensor& x, bool training) const {
    return batch_norm(x, gamma, beta, rmean, rvar, training);
  }
};

// Per-channel mean and biased variance in double of x viewed as (N, C, HW).
void channel_stats(const std::vector<float>& x, int N, int C, int HW, std::vector<double>& mean,
                   std::vector<double>& var) {
  mean.assign(C, 0.0);
  var.assign(C, 0.0);
  const double m = static_cast<double>(N) * HW;
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < HW; ++i) mean[c] += x[(n * C + c) * HW + i] / m;
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < HW; ++i) {
        const double d = x[(n * C + c) * HW + i] - mean[c];
        var[c] += d * d / m;
      }
}

}  // namespace

TEST_CASE("batch_norm training gradients (2-D input) match finite differences", "[batchnorm]") {
  Tensor x = random_tensor({3, 2, 3, 3}, 31, -2.0f, 2.0f);
  x.set_requires_grad(true);
  Bn bn(2, 40);
  const int m = 27;
  check_gradient([&] { return bn(x, true); }, x, m, "batch_norm dx");
  check_gradient([&] { return bn(x, true); }, bn.gamma, m, "batch_norm dgamma");
  check_gradient([&] { return bn(x, true); }, bn.beta, m, "batch_norm dbeta");
}

TEST_CASE("batch_norm training gradients (1-D features) match finite differences", "[batchnorm]") {
  Tensor x = random_tensor({6, 3}, 32, -2.0f, 2.0f);
  x.set_requires_grad(true);
  Bn bn(3, 41);
  check_gradient([&] { return bn(x, true); }, x, 6, "batch_norm1d dx");
  check_gradient([&] { return bn(x, true); }, bn.gamma, 6, "batch_norm1d dgamma");
  check_gradient([&] { return bn(x, true); }, bn.beta, 6, "batch_norm1d dbeta");
}

TEST_CASE("batch_norm eval-mode gradients match finite differences", "[batchnorm]") {
  Tensor x = random_tensor({2, 3, 2, 3}, 33, -2.0f, 2.0f);
  x.set_requires_grad(true);
  Bn bn(3, 42);
  bn.rmean = random_tensor({3}, 43, -0.5f, 0.5f);
  bn.rvar = random_tensor({3}, 44, 0.5f, 2.0f);
  check_gradient([&] { return bn(x, false); }, x, 12, "batch_norm eval dx");
  check_gradient([&] { return bn(x, false); }, bn.gamma, 12, "batch_norm eval dgamma");
  check_gradient([&] { return bn(x, false); }, bn.beta, 12, "batch_norm eval dbeta");
  // Eval mode leaves the running statistics alone.
  const auto rm = bn.rmean.to_vector();
  bn(x, false);
  CHECK(bn.rmean.to_vector() == rm);
}

TEST_CASE("batch_norm training normalises each channel and updates running stats", "[batchnorm]") {
  const int N = 8, C = 3, H = 5, W = 4, HW = H * W, m = N * HW;
  // Channel offsets far from 0 make a one-pass variance formula fail.
  std::vector<float> xv = random_tensor({N, C, H, W}, 50, -1.0f, 1.0f).to_vector();
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < HW; ++i)
        xv[(n * C + c) * HW + i] = xv[(n * C + c) * HW + i] * (c + 1) + 100.0f * c;
  Tensor x = Tensor::from_vector(xv, {N, C, H, W});
  Tensor gamma = Tensor::full({C}, 1.0f), beta = Tensor::zeros({C});
  Tensor rmean = Tensor::zeros({C}), rvar = Tensor::full({C}, 1.0f);
  const auto y = batch_norm(x, gamma, beta, rmean, rvar, true).to_vector();

  std::vector<double> mean, var, ymean, yvar;
  channel_stats(xv, N, C, HW, mean, var);
  channel_stats(y, N, C, HW, ymean, yvar);
  const double tol = 1e-5 * tolerance_scale(m);
  for (int c = 0; c < C; ++c) {
    INFO("channel " << c);
    CHECK(std::fabs(ymean[c]) <= tol);
    // Normalised by var + eps: the output variance is var / (var + eps).
    CHECK(std::fabs(yvar[c] - var[c] / (var[c] + 1e-5)) <= tol);
  }
  // momentum 0.1, and the UNBIASED variance goes into the running estimate.
  std::vector<float> want_rm, want_rv;
  for (int c = 0; c < C; ++c) {
    want_rm.push_back(static_cast<float>(0.1 * mean[c]));
    want_rv.push_back(static_cast<float>(0.9 + 0.1 * var[c] * m / (m - 1.0)));
  }
  require_close(rmean.to_vector(), want_rm, tol, tol, "running_mean");
  require_close(rvar.to_vector(), want_rv, tol, tol, "running_var");
  // A second step with momentum 0.5 blends from the current estimate.
  batch_norm(x, gamma, beta, rmean, rvar, true, 0.5f);
  for (int c = 0; c < C; ++c) {
    want_rm[c] = static_cast<float>(0.5 * want_rm[c] + 0.5 * mean[c]);
    want_rv[c] = static_cast<float>(0.5 * want_rv[c] + 0.5 * var[c] * m / (m - 1.0));
  }
  require_close(rmean.to_vector(), want_rm, tol, tol, "running_mean, second step");
  require_close(rvar.to_vector(), want_rv, tol, tol, "running_var, second step");
}

TEST_CASE("batch_norm eval mode applies the running statistics", "[batchnorm]") {
  const int N = 2, C = 2;
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8}, {N, C, 1, 2});
  Tensor gamma = Tensor::from_vector<float>({2, 0.5f}, {C});
  Tensor beta = Tensor::from_vector<float>({1, -1}, {C});
  Tensor rmean = Tensor::from_vector<float>({1, 4}, {C});
  Tensor rvar = Tensor::from_vector<float>({4, 0.25f}, {C});
  const auto y = batch_norm(x, gamma, beta, rmean, rvar, false, 0.1f, 1e-5f).to_vector();
  std::vector<float> want;
  const float g[2] = {2, 0.5f}, b[2] = {1, -1}, rm[2] = {1, 4}, rv[2] = {4, 0.25f};
  const auto xv = x.to_vector();
  for (int i = 0; i < 8; ++i) {
    const int c = (i / 2) % 2;
    want.push_back(static_cast<float>((xv[i] - rm[c]) / std::sqrt(rv[c] + 1e-5) * g[c] + b[c]));
  }
  require_close(y, want, 1e-6, 1e-6, "batch_norm eval");
}

TEST_CASE("batch_norm results do not depend on the thread count", "[batchnorm]") {
  // Bit-identical: each channel is reduced by one thread in a fixed order.
  Tensor x = random_tensor({4, 8, 9, 7}, 60, -3.0f, 5.0f);
  Tensor gy = random_tensor(x.shape(), 61);
  auto run_with = [&](int threads) {
    const ThreadCount thread_count(threads);
    Tensor xi = x.clone();
    xi.set_requires_grad(true);
    Bn bn(8, 62);
    Tensor y = bn(xi, true);
    y.backward(gy);
    std::vector<std::vector<float>> out{y.to_vector(), xi.grad().to_vector(),
                                        bn.gamma.grad().to_vector(), bn.rvar.to_vector()};
    return out;
  };
  CHECK(run_with(1) == run_with(3));
}

TEST_CASE("batch_norm rejects bad shapes and values", "[batchnorm][errors]") {
  Tensor x = random_tensor({4, 3, 2, 2}, 1);
  Tensor g = Tensor::full({3}, 1.0f), b = Tensor::zeros({3});
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.0f);
  Tensor g4 = Tensor::full({4}, 1.0f);
  CHECK_THROWS_AS(batch_norm(x, g4, b, rm, rv, true), ShapeError);
  CHECK_THROWS_WITH(batch_norm(x, g4, b, rm, rv, true),
                    Catch::Contains("batch_norm") && Catch::Contains("(4,)"));
  Tensor x3 = random_tensor({4, 3, 2}, 1);
  CHECK_THROWS_WITH(batch_norm(x3, g, b, rm, rv, true), Catch::Contains("batch_norm"));
  // One value per channel: the batch variance is undefined.
  Tensor single = random_tensor({1, 3}, 1);
  CHECK_THROWS_AS(batch_norm(single, g, b, rm, rv, true), ShapeError);
  CHECK_NOTHROW(batch_norm(single, g, b, rm, rv, false));
  CHECK_THROWS_AS(batch_norm(x, g, b, rm, rv, true, 1.5f), ValueError);
  CHECK_THROWS_WITH(batch_norm(x, g, b, rm, rv, true, 0.1f, 0.0f),
                    Catch::Contains("batch_norm") && Catch::Contains("eps"));
}
