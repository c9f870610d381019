// The layers of layers/: names and reprs as PyTorch, initialisation, modes
// and buffers, shapes without tensors, containers against the raw ops, and a
// Residual block against PyTorch (tests/fixtures/residual_forward.txt).
//
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Layers against the raw ops they call: exact (same ops, same order).
// Against PyTorch's float64 reference: our float32 sums of length L round by
// ~6e-8 * sqrt(L) relative per layer; we allow atol = rtol = 1e-4 *
// tolerance_scale(L), L = the longest reduction in the block (conv: C*R*S;
// BN and weight gradients: N*H*W), a margin of ~100x over that estimate.
#include <cmath>

#include "core/autograd.h"
#include "layers/all.h"
#include "test_helpers.h"
#include "torch_fixture.h"

using namespace scratchnet;
using namespace scratchnet::testing;

namespace {

float max_abs(const Tensor& t) {
  float m = 0;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

TEST_CASE("layers print as PyTorch's repr", "[layers]") {
  Generator g(1);
  CHECK(Conv2d(g, 1, 6, 5, 1, 2).describe() ==
        "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))");
  CHECK(Conv2d(g, 6, 16, 5).describe() == "Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))");
  CHECK(Conv2d(g, 6, 16, 5, 1, 0, false).describe() ==
        "Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1), bias=False)");
  CHECK(Linear(g, 400, 120).describe() == "Linear(in_features=400, out_features=120, bias=True)");
  CHECK(MaxPool2d(3, 2).describe() ==
        "MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False)");
  CHECK(AvgPool2d(2).describe() == "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  CHECK(AdaptiveAvgPool2d(1, 1).describe() == "AdaptiveAvgPool2d(output_size=(1, 1))");
  CHECK(BatchNorm2d(64).describe() ==
        "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  CHECK(BatchNorm1d(4).describe() ==
        "BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  CHECK(Dropout(0.5f, g).describe() == "Dropout(p=0.5, inplace=False)");
  CHECK(Flatten().describe() == "Flatten(start_dim=1, end_dim=-1)");
  CHECK(ReLU().describe() == "ReLU()");
  CHECK(Sigmoid().describe() == "Sigmoid()");
}

TEST_CASE("layers reject bad arguments with typed errors", "[layers]") {
  Generator g(1);
  CHECK_THROWS_AS(AdaptiveAvgPool2d(2, 2), ValueError);
  CHECK_THROWS_WITH(AdaptiveAvgPool2d(7, 7), Catch::Contains("(1, 1)"));
  CHECK_THROWS_AS(Conv2d(g, 0, 6, 5), ValueError);
  CHECK_THROWS_AS(Conv2d(g, 1, 6, 5, 0), ValueError);
  CHECK_THROWS_AS(Linear(g, 4, -1), ValueError);
  CHECK_THROWS_AS(MaxPool2d(2, 2, 2), ValueError);
  CHECK_THROWS_AS(Dropout(1.0f, g), ValueError);
  CHECK_THROWS_AS(BatchNorm2d(0), ValueError);
  CHECK_THROWS_AS(Residual(g, 3, 4), ValueError);  // shape changes: needs the 1x1 conv
  BatchNorm2d bn(3);
  CHECK_THROWS_AS(bn.forward(Tensor::zeros({2, 3})), ShapeError);
  Conv2d conv(g, 3, 4, 3);
  CHECK_THROWS_AS(conv.output_shape({1, 2, 8, 8}), ShapeError);
  CHECK_THROWS_AS(conv.output_shape({1, 3, 2, 2}), ShapeError);  // kernel larger than input
  CHECK_THROWS_AS(Linear(g, 4, 2).output_shape({1, 5}), ShapeError);
}

TEST_CASE("conv and linear are initialised as the notebook, reproducibly", "[layers]") {
  Generator g(42);
  Conv2d conv(g, 16, 32, 3);
  const double a = std::sqrt(6.0 / (16 * 9 + 32 * 9));  // xavier_uniform_
  const float wmax = max_abs(conv.weight());
  CHECK(wmax <= a);
  CHECK(wmax > 0.99 * a);  // 4608 draws reach close to the bound
  const auto w = conv.weight().to_vector();
  double mean = 0, var = 0;
  for (float v : w) mean += v;
  mean /= static_cast<double>(w.size());
  for (float v : w) var += (v - mean) * (v - mean);
  var /= static_cast<double>(w.size());
  CHECK(std::fabs(mean) < 0.05 * a);                // 4.8 standard errors of the mean
  CHECK(var == Approx(a * a / 3.0).epsilon(0.05));  // the uniform's variance
  const double b = 1.0 / std::sqrt(16.0 * 9.0);     // PyTorch's default bias bound
  CHECK(max_abs(conv.bias()) <= b);
  CHECK(max_abs(conv.bias()) > 0.5 * b);

  Linear lin(g, 100, 10);
  const double al = std::sqrt(6.0 / 110.0);
  CHECK(max_abs(lin.weight()) <= al);
  CHECK(max_abs(lin.weight()) > 0.95 * al);
  CHECK(max_abs(lin.bias()) <= 0.1);

  Generator g1(7), g2(7), g3(8);
  Conv2d c1(g1, 2, 3, 3), c2(g2, 2, 3, 3), c3(g3, 2, 3, 3);
  CHECK(c1.weight().to_vector() == c2.weight().to_vector());
  CHECK(c1.bias().to_vector() == c2.bias().to_vector());
  CHECK(c1.weight().to_vector() != c3.weight().to_vector());
  CHECK(c1.weight().to_vector() != c1.bias().to_vector());
}

TEST_CASE("batch norm state: names, init, num_batches_tracked", "[layers]") {
  BatchNorm2d bn(3);
  const auto sd = bn.state_dict();
  REQUIRE(sd.size() == 5);
  const char* keys[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
  for (int i = 0; i < 5; ++i) CHECK(sd[i].name == keys[i]);
  CHECK(bn.named_parameters().size() == 2);
  CHECK(bn.weight().to_vector() == std::vector<float>(3, 1.0f));
  CHECK(bn.bias().to_vector() == std::vector<float>(3, 0.0f));
  CHECK(bn.running_mean().to_vector() == std::vector<float>(3, 0.0f));
  CHECK(bn.running_var().to_vector() == std::vector<float>(3, 1.0f));
  CHECK(sd[4].tensor.dtype() == DType::I64);
  CHECK(sd[4].tensor.shape().empty());
  CHECK(bn.num_batches_tracked() == 0);

  Tensor x = random_tensor({4, 3, 2, 2}, 5, 1.0f, 3.0f);  // mean 2, not the running 0
  bn.forward(x);
  bn.forward(x);
  CHECK(bn.num_batches_tracked() == 2);
  for (float m : bn.running_mean().to_vector()) CHECK(m > 0.2f);  // moved towards 2
  bn.eval();
  const auto before = bn.running_mean().to_vector();
  bn.forward(x);
  CHECK(bn.num_batches_tracked() == 2);  // eval forwards are not counted
  CHECK(bn.running_mean().to_vector() == before);

  BatchNorm1d bn1(5);
  Tensor y = bn1.forward(random_tensor({8, 5}, 6));
  CHECK(y.shape() == Shape{8, 5});
  CHECK(bn1.num_batches_tracked() == 1);
  CHECK_THROWS_AS(bn1.forward(random_tensor({8, 5, 2, 2}, 6)), ShapeError);
}

TEST_CASE("dropout is the identity in eval and draws from the model's generator", "[layers]") {
  Generator g(3);
  Dropout drop(0.5f, g);
  Tensor x = random_tensor({64, 64}, 9, 1.0f, 2.0f);
  drop.eval();
  const uint64_t off = g.offset();
  CHECK(drop.forward(x).to_vector() == x.to_vector());
  CHECK(g.offset() == off);  // eval draws nothing
  drop.train();
  const auto y = drop.forward(x).to_vector();
  CHECK(g.offset() > off);
  const auto xv = x.to_vector();
  int zeros = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y[i] == 0.0f)
      ++zeros;
    else
      CHECK(y[i] == Approx(2.0f * xv[i]).epsilon(1e-6));  // kept values scaled by 1 / (1 - p)
  }
  // 4096 Bernoulli(0.5): the count is 2048 +- 32 (one standard deviation).
  CHECK(zeros > 2048 - 200);
  CHECK(zeros < 2048 + 200);
  CHECK(drop.forward(x).to_vector() != y);  // the next stream gives another mask
}

TEST_CASE("a Sequential gives exactly the raw ops' output, and its shapes", "[layers]") {
  Generator g(11);
  Sequential seq;
  auto conv = seq.add(std::make_shared<Conv2d>(g, 2, 4, 3, 1, 1));
  seq.add(std::make_shared<ReLU>());
  seq.add(std::make_shared<MaxPool2d>(2, 2));
  auto bn = seq.add(std::make_shared<BatchNorm2d>(4));
  seq.add(std::make_shared<AvgPool2d>(2, 2));
  seq.add(std::make_shared<Sigmoid>());
  seq.add(std::make_shared<Flatten>());
  auto lin = seq.add(std::make_shared<Linear>(g, 4 * 2 * 2, 5));
  CHECK(seq.children()[0].first == "0");
  CHECK(seq.children()[7].first == "7");
  const auto sd = seq.state_dict();
  CHECK(sd.front().name == "0.weight");
  CHECK(sd[2].name == "3.weight");
  CHECK(sd.back().name == "7.bias");

  Tensor x = random_tensor({3, 2, 8, 8}, 12);
  Tensor got = seq.forward(x);
  Tensor rm = Tensor::zeros({4}), rv = Tensor::full({4}, 1.0f);
  Tensor h = max_pool2d(relu(conv2d(x, conv->weight(), conv->bias(), 1, 1)), 2, 2);
  h = batch_norm(h, bn->weight(), bn->bias(), rm, rv, true);
  h = sigmoid(avg_pool2d(h, 2, 2)).flatten();
  Tensor want = linear(h, lin->weight(), lin->bias());
  CHECK(got.shape() == Shape{3, 5});
  CHECK(got.to_vector() == want.to_vector());
  CHECK(bn->running_mean().to_vector() == rm.to_vector());
  CHECK(seq.output_shape(x.shape()) == got.shape());

  const auto info = summarize(seq, {1, 2, 8, 8});
  REQUIRE(info.size() == 8);
  CHECK(info[0].name == "0");
  CHECK(info[0].description == conv->describe());
  CHECK(info[0].output_shape == Shape{1, 4, 8, 8});
  CHECK(info[0].num_params == 4 * 2 * 9 + 4);
  CHECK(info[2].output_shape == Shape{1, 4, 4, 4});
  CHECK(info[6].output_shape == Shape{1, 16});
  CHECK(info[7].num_params == 16 * 5 + 5);
  CHECK_THROWS_AS(summarize(seq, {1, 3, 8, 8}), ShapeError);
}

TEST_CASE("pack_parameters keeps the values and binds gradient views", "[layers]") {
  Generator g(13);
  Sequential seq;
  auto conv = seq.add(std::make_shared<Conv2d>(g, 1, 2, 3));
  seq.add(std::make_shared<Flatten>());
  auto lin = seq.add(std::make_shared<Linear>(g, 2 * 4 * 4, 3));
  const auto w_before = conv->weight().to_vector();
  const auto b_before = lin->bias().to_vector();
  Tensor x = random_tensor({2, 1, 6, 6}, 14);
  const auto y_before = seq.forward(x).to_vector();

  ParameterSlab slab = pack_parameters(seq);
  CHECK(conv->weight().to_vector() == w_before);
  CHECK(lin->bias().to_vector() == b_before);
  CHECK(conv->weight().storage() == slab.params.storage());  // the layer's handle moved too
  CHECK(seq.forward(x).to_vector() == y_before);

  Tensor y = seq.forward(x);
  y.backward(Tensor::full(y.shape(), 1.0f));
  REQUIRE(conv->weight().grad().defined());
  CHECK(conv->weight().grad().storage() == slab.grads.storage());
  CHECK(lin->bias().grad().to_vector() == std::vector<float>(3, 2.0f));  // d sum / d b = N
  double slab_sum = 0, view_sum = 0;
  for (float v : slab.grads.to_vector()) slab_sum += v;
  for (const auto& p : seq.named_parameters())
    for (float v : p.tensor.grad().to_vector()) view_sum += v;
  CHECK(slab_sum == Approx(view_sum));
}

TEST_CASE("residual block: names, shapes and forward order", "[layers]") {
  Generator g(17);
  Residual blk(g, 3, 4, true, 2);
  const auto sd = blk.state_dict();
  std::vector<std::string> keys;
  for (const auto& e : sd) keys.push_back(e.name);
  const std::vector<std::string> want = {"conv1.weight",
                                         "conv1.bias",
                                         "conv2.weight",
                                         "conv2.bias",
                                         "conv3.weight",
                                         "conv3.bias",
                                         "bn1.weight",
                                         "bn1.bias",
                                         "bn1.running_mean",
                                         "bn1.running_var",
                                         "bn1.num_batches_tracked",
                                         "bn2.weight",
                                         "bn2.bias",
                                         "bn2.running_mean",
                                         "bn2.running_var",
                                         "bn2.num_batches_tracked"};
  CHECK(keys == want);
  CHECK(blk.output_shape({2, 3, 7, 7}) == Shape{2, 4, 4, 4});
  const auto info = summarize(blk, {2, 3, 7, 7});
  std::vector<std::string> order;
  for (const auto& i : info) order.push_back(i.name);
  CHECK(order == std::vector<std::string>{"conv1", "bn1", "conv2", "bn2", "conv3"});
  Residual same(g, 4, 4);
  CHECK(same.state_dict().size() == 14);
  CHECK(same.output_shape({1, 4, 5, 5}) == Shape{1, 4, 5, 5});
  CHECK(same.forward(random_tensor({2, 4, 5, 5}, 18)).shape() == Shape{2, 4, 5, 5});
}

namespace {

// Loads the fixture's weights into a fresh block, runs it in training mode
// (output, gradients through both paths, running statistics), then in eval.
void check_residual_against_torch(const std::string& file, int cin, int cout, bool use_1x1conv,
                                  int strides) {
  const auto fx = TorchFixture::load(file);
  Generator g(0);
  Residual blk(g, cin, cout, use_1x1conv, strides);
  fx.load_weights(blk);
  REQUIRE(fx.formulas.size() == blk.named_parameters().size());
  Tensor x = fx.tensor("input").set_requires_grad(true);
  Tensor y = blk.forward(x);
  REQUIRE(y.shape() == fx.tensor("output").shape());
  // Longest reductions: conv2 over C*3*3 terms, BN and weight gradients over N*H*W.
  const int64_t hw = y.size(2) * y.size(3);
  const double tol = 1e-4 * tolerance_scale(std::max<int64_t>(cout * 9, 2 * hw));
  require_close(y.to_vector(), fx.values("output"), tol, tol, "output");
  y.backward(fx.tensor("projection"));
  require_close(x.grad().to_vector(), fx.values("grad.input"), tol, tol, "grad input");
  const auto sd = blk.state_dict();
  auto find = [&](const std::string& k) {
    for (const auto& e : sd)
      if (e.name == k) return e.tensor;
    FAIL("no " << k);
    return Tensor();
  };
  for (const char* k : {"conv1.weight", "conv3.weight", "bn1.weight", "bn2.bias"}) {
    if (!use_1x1conv && std::string(k) == "conv3.weight") continue;
    require_close(find(k).grad().to_vector(), fx.values(std::string("grad.") + k), tol, tol,
                  std::string("grad ") + k);
  }
  for (const char* k :
       {"bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"})
    require_close(find(k).to_vector(), fx.values(k), tol, tol, k);
  CHECK(find("bn1.num_batches_tracked").host<int64_t>()[0] == 1);

  blk.eval();
  NoGradGuard ng;
  require_close(blk.forward(fx.tensor("input")).to_vector(), fx.values("eval_output"), tol, tol,
                "eval output");
}

}  // namespace

TEST_CASE("residual block matches PyTorch in training and eval mode", "[layers]") {
  SECTION("use_1x1conv, strides 2") {
    check_residual_against_torch("residual_forward.txt", 3, 4, true, 2);
  }
  SECTION("identity skip path") {
    check_residual_against_torch("residual_identity_forward.txt", 4, 4, false, 1);
  }
}
