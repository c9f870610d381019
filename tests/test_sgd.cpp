// SGD step against torch.optim.SGD (dampening 0).
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Expected values: PyTorch 1.13 after three steps from the same start and
// gradients (printed to 9 significant digits); a few float roundings per
// step separate us, so atol = rtol = 1e-6.
#include "core/ops.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::require_close;

namespace {

const std::vector<std::vector<float>> kGrads{
    {0.5f, 0.25f, -1.0f}, {-0.3f, 0.1f, 0.2f}, {0.7f, -0.6f, 0.0f}};

// Three steps of sgd_step with lr 0.1 from param (1, -2, 0.5).
std::vector<float> three_steps(kernels::SgdParams p) {
  Tensor param = Tensor::from_vector<float>({1.0f, -2.0f, 0.5f}, {3});
  Tensor buf = Tensor::full({3}, 123.0f);  // garbage: the first step must overwrite it
  p.lr = 0.1f;
  for (std::size_t s = 0; s < kGrads.size(); ++s) {
    p.first_step = s == 0;
    sgd_step(param, Tensor::from_vector(kGrads[s], {3}), buf, p);
  }
  return param.to_vector();
}

}  // namespace

TEST_CASE("sgd_step matches torch.optim.SGD", "[sgd]") {
  kernels::SgdParams p;
  SECTION("plain") {
    // param -= lr * grad, by hand: 1 - 0.1 * (0.5 - 0.3 + 0.7) = 0.91, ...
    require_close(three_steps(p), {0.91f, -2.0f + 0.025f, 0.58f}, 1e-6, 1e-6, "plain");
  }
  SECTION("weight decay") {
    p.weight_decay = 0.5f;
    require_close(three_steps(p), {0.770749986f, -1.68681252f, 0.499937505f}, 1e-6, 1e-6,
                  "weight decay");
  }
  SECTION("momentum, first step copies the gradient") {
    p.momentum = 0.9f;
    require_close(three_steps(p), {0.851499975f, -2.02675009f, 0.73300004f}, 1e-6, 1e-6,
                  "momentum");
  }
  SECTION("momentum and weight decay") {
    p.momentum = 0.9f;
    p.weight_decay = 0.1f;
    require_close(three_steps(p), {0.797474027f, -1.91446054f, 0.701599538f}, 1e-6, 1e-6,
                  "momentum + weight decay");
  }
  SECTION("nesterov") {
    p.momentum = 0.9f;
    p.nesterov = true;
    p.weight_decay = 0.01f;
    require_close(three_steps(p), {0.768721163f, -1.98271143f, 0.784725547f}, 1e-6, 1e-6,
                  "nesterov");
  }
}

TEST_CASE("sgd_step on a large slab matches the per-element formula", "[sgd]") {
  // Big enough for the parallel branch; a hand loop of the same formulas.
  const int64_t n = (1 << 16) + 5;
  Tensor param = scratchnet::testing::random_tensor({n}, 1);
  Tensor grad = scratchnet::testing::random_tensor({n}, 2);
  Tensor buf = scratchnet::testing::random_tensor({n}, 3);
  auto pv = param.to_vector(), gv = grad.to_vector(), bv = buf.to_vector();
  kernels::SgdParams p;
  p.lr = 0.05f;
  p.momentum = 0.8f;
  p.weight_decay = 1e-3f;
  p.first_step = false;
  sgd_step(param, grad, buf, p);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gv[i] + p.weight_decay * pv[i];
    bv[i] = p.momentum * bv[i] + g;
    pv[i] -= p.lr * bv[i];
  }
  require_close(param.to_vector(), pv, 1e-6, 1e-6, "param");
  require_close(buf.to_vector(), bv, 1e-6, 1e-6, "momentum buffer");
}

TEST_CASE("sgd_step rejects bad hyper-parameters and shapes", "[sgd][errors]") {
  Tensor param = Tensor::zeros({3}), grad = Tensor::zeros({3}), buf = Tensor::zeros({3});
  kernels::SgdParams p;
  p.lr = -0.1f;
  CHECK_THROWS_AS(sgd_step(param, grad, buf, p), ValueError);
  CHECK_THROWS_WITH(sgd_step(param, grad, buf, p), Catch::Contains("sgd") &&
                                                       Catch::Contains("learning rate") &&
                                                       Catch::Contains("-0.1"));
  p.lr = 0.1f;
  p.nesterov = true;  // with momentum 0
  CHECK_THROWS_AS(sgd_step(param, grad, buf, p), ValueError);
  p.nesterov = false;
  p.weight_decay = -1.0f;
  CHECK_THROWS_AS(sgd_step(param, grad, buf, p), ValueError);
  p.weight_decay = 0.0f;
  Tensor grad4 = Tensor::zeros({4});
  CHECK_THROWS_AS(sgd_step(param, grad4, buf, p), ShapeError);
  CHECK_THROWS_WITH(sgd_step(param, grad4, buf, p),
                    Catch::Contains("sgd_step") && Catch::Contains("(4,)"));
  p.momentum = 0.9f;
  Tensor buf2 = Tensor::zeros({2});
  CHECK_THROWS_WITH(sgd_step(param, grad, buf2, p), Catch::Contains("momentum buffer"));
}
