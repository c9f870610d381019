// End to end with raw ops: conv(1->4, 3x3, pad 1) -> batch_norm -> relu ->
// max_pool(2) -> flatten -> linear(64 -> 10) -> cross_entropy, trained with
// plain SGD (lr 0.1) on one fixed batch of 16 random 8x8 images with fixed
// labels. Memorising 16 examples with 690 parameters is easy: if forward,
// backward and the update compose correctly, the loss must fall below a
// tenth of its initial value (about ln 10) within 100 steps; a wrong sign,
// a missing accumulation or a broken op leaves it near ln 10 or makes it
// NaN. The run takes well under a second.
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::random_tensor;

TEST_CASE("a tiny conv net memorises a fixed batch with SGD", "[tiny_net]") {
  const int N = 16, classes = 10;
  Tensor x = random_tensor({N, 1, 8, 8}, 100);
  std::vector<int32_t> lab;
  for (int i = 0; i < N; ++i) lab.push_back((i * 7 + 3) % classes);
  Tensor labels = Tensor::from_vector(lab, {N});

  // PyTorch's default init scale: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  const float kc = 1.0f / 3.0f, kl = 1.0f / 8.0f;
  Tensor cw = random_tensor({4, 1, 3, 3}, 1, -kc, kc), cb = random_tensor({4}, 2, -kc, kc);
  Tensor gamma = Tensor::full({4}, 1.0f), beta = Tensor::zeros({4});
  Tensor rmean = Tensor::zeros({4}), rvar = Tensor::full({4}, 1.0f);
  Tensor lw = random_tensor({classes, 64}, 3, -kl, kl), lb = random_tensor({classes}, 4, -kl, kl);
  std::vector<Tensor> params{cw, cb, gamma, beta, lw, lb};
  for (Tensor& p : params) p.set_requires_grad(true);

  auto forward = [&] {
    Tensor h = conv2d(x, cw, cb, 1, 1);                       // (16, 4, 8, 8)
    h = relu(batch_norm(h, gamma, beta, rmean, rvar, true));  // (16, 4, 8, 8)
    h = max_pool2d(h, 2, 2).flatten();                        // (16, 64)
    return cross_entropy(linear(h, lw, lb), labels);
  };

  kernels::SgdParams sgd;
  sgd.lr = 0.1f;
  Tensor no_buf;  // plain SGD keeps no momentum buffer
  float first = 0.0f, last = 0.0f;
  int steps = 0;
  for (; steps < 100; ++steps) {
    for (Tensor& p : params) p.set_grad(Tensor());
    Tensor loss = forward();
    last = loss.item();
    REQUIRE(std::isfinite(last));
    if (steps == 0) first = last;
    if (last < 0.1f * first) break;
    loss.backward();
    for (Tensor& p : params) {
      Tensor pp = p.detach();  // update the values in place, outside the tape
      REQUIRE(p.grad().defined());
      sgd_step(pp, p.grad(), no_buf, sgd);
    }
  }
  INFO("loss " << first << " -> " << last << " after " << steps << " steps");
  CHECK(first == Approx(std::log(10.0)).epsilon(0.3));  // near-uniform predictions at the start
  CHECK(last < 0.1f * first);
  // The trained net classifies its training batch.
  NoGradGuard ng;
  Tensor h = conv2d(x, cw, cb, 1, 1);
  h = relu(batch_norm(h, gamma, beta, rmean, rvar, true));
  h = max_pool2d(h, 2, 2).flatten();
  CHECK(count_correct(linear(h, lw, lb), labels).to_vector<int32_t>()[0] == N);
}
