// Softmax cross-entropy (mean over the batch), argmax and count_correct.
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Gradients: check_gradient's rule with the reduction length C (the
// log-sum-exp sums over a row). Known losses come from PyTorch 1.13
// (F.cross_entropy) or closed forms; the kernel sums rows in double, so a
// float result agrees to a few ulps: atol = rtol = 1e-6.
#include <cmath>
#include <limits>
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/softmax_ce.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;

namespace {
Tensor labels_of(std::vector<int32_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Tensor::from_vector(v, {n});
}
}  // namespace

TEST_CASE("cross_entropy gradient matches finite differences", "[softmax_ce]") {
  Tensor logits = random_tensor({4, 5}, 17, -3.0f, 3.0f);
  logits.set_requires_grad(true);
  Tensor labels = labels_of({0, 4, 2, 2});
  check_gradient([&] { return cross_entropy(logits, labels); }, logits, 5, "cross_entropy dlogits");
}

TEST_CASE("cross_entropy of known logits", "[softmax_ce]") {
  const float ln2 = static_cast<float>(std::log(2.0));
  CHECK(cross_entropy(Tensor::from_vector<float>({0, 0}, {1, 2}), labels_of({0})).item() ==
        Approx(ln2).epsilon(1e-6));
  // PyTorch 1.13: F.cross_entropy([[1, 2, 3]], [2]) and a 2-row mean.
  CHECK(cross_entropy(Tensor::from_vector<float>({1, 2, 3}, {1, 3}), labels_of({2})).item() ==
        Approx(0.40760594606399536).epsilon(1e-6));
  CHECK(cross_entropy(Tensor::from_vector<float>({1, 2, 3, 0.5f, -1, 2}, {2, 3}), labels_of({0, 1}))
            .item() == Approx(2.824458599090576).epsilon(1e-6));
  // Huge logits stay finite: the row maximum is subtracted first.
  Tensor big = Tensor::from_vector<float>({1000, 0}, {1, 2});
  const float l0 = cross_entropy(big, labels_of({0})).item();
  const float l1 = cross_entropy(big, labels_of({1})).item();
  CHECK(std::isfinite(l0));
  CHECK(l0 == Approx(0.0).margin(1e-6));
  CHECK(l1 == Approx(1000.0).epsilon(1e-6));
  Tensor tiny = Tensor::from_vector<float>({-1000, -1000, -1000}, {1, 3});
  CHECK(cross_entropy(tiny, labels_of({1})).item() == Approx(std::log(3.0)).epsilon(1e-6));
}

TEST_CASE("cross_entropy gradient rows sum to zero and scale with the seed", "[softmax_ce]") {
  const int N = 6, C = 10;
  Tensor logits = random_tensor({N, C}, 3, -5.0f, 5.0f);
  logits.set_requires_grad(true);
  Tensor labels = labels_of({0, 9, 3, 3, 7, 1});
  Tensor loss = cross_entropy(logits, labels);
  REQUIRE(loss.shape().empty());
  loss.backward(Tensor::full({}, 2.0f));
  const auto g = logits.grad().to_vector();
  const auto lab = labels.to_vector<int32_t>();
  for (int n = 0; n < N; ++n) {
    double s = 0;
    for (int c = 0; c < C; ++c) s += g[n * C + c];
    INFO("row " << n);
    CHECK(std::fabs(s) <= 1e-6);
    // The label's entry is the only negative one: 2 * (p - 1) / N.
    for (int c = 0; c < C; ++c) CHECK((g[n * C + c] < 0) == (c == lab[n]));
  }
}

TEST_CASE("cross_entropy rejects bad labels and shapes", "[softmax_ce][errors]") {
  Tensor logits = random_tensor({3, 4}, 1);
  CHECK_THROWS_AS(cross_entropy(logits, labels_of({0, 4, 1})), ValueError);
  CHECK_THROWS_WITH(cross_entropy(logits, labels_of({0, 4, 1})), Catch::Contains("cross_entropy") &&
                                                                     Catch::Contains("label 4") &&
                                                                     Catch::Contains("row 1"));
  CHECK_THROWS_AS(cross_entropy(logits, labels_of({0, 1, -1})), ValueError);
  CHECK_THROWS_AS(cross_entropy(logits, labels_of({0, 1})), ShapeError);
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::zeros({3})),
                    Catch::Contains("cross_entropy") && Catch::Contains("int32"));
  CHECK_THROWS_AS(cross_entropy(random_tensor({3, 4, 1}, 1), labels_of({0, 1, 2})), ShapeError);
}

TEST_CASE("softmax_ce kernel turns a bad label into NaN, not a stray read", "[softmax_ce]") {
  const auto p = kernels::cross_entropy_params(2, 3);
  const std::vector<float> logits{1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> labels{1, 7};
  std::vector<float> probs(6), dlogits(6, 0.0f);
  float loss = 0.0f, dloss = 1.0f;
  kernels::softmax_ce_forward_cpu(p, logits.data(), labels.data(), &loss, probs.data());
  CHECK(std::isnan(loss));
  kernels::softmax_ce_backward_cpu(p, probs.data(), labels.data(), &dloss, dlogits.data());
  for (float g : dlogits) CHECK(std::isfinite(g));
  // Probabilities of each row sum to 1.
  CHECK(probs[0] + probs[1] + probs[2] == Approx(1.0f).epsilon(1e-6));
}

TEST_CASE("argmax takes the first maximum; count_correct counts matches", "[softmax_ce]") {
  Tensor x = Tensor::from_vector<float>({1, 3, 3, 0,      // tie: first wins -> 1
                                         -5, -4, -9, -4,  // tie -> 1
                                         0, 0, 0, 7,      // -> 3
                                         2, 1, 0, -1},    // -> 0
                                        {4, 4});
  CHECK(argmax(x).to_vector<int32_t>() == std::vector<int32_t>{1, 1, 3, 0});
  CHECK(count_correct(x, labels_of({1, 3, 3, 0})).to_vector<int32_t>() == std::vector<int32_t>{3});
  CHECK(count_correct(x, labels_of({0, 0, 0, 1})).to_vector<int32_t>() == std::vector<int32_t>{0});
  CHECK_THROWS_AS(count_correct(x, labels_of({1, 3})), ShapeError);
  CHECK_THROWS_WITH(argmax(random_tensor({4}, 1)), Catch::Contains("argmax"));
}
