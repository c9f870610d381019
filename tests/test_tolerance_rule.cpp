// The [cuda] tests' tolerance rule (tests/test_cuda_helpers.h) checked on
// the CPU, where it can run without a GPU: the float CPU reference, which sums
// in yet another order, must satisfy the fp64 bound (rule 2), and a result
// missing one image of the batch must not; with exact_tensor() inputs the
// float sums equal the double ones exactly (rule 1's premise).
// Tolerance rule: the rule under test; everything else here is exact.
#include <catch2/catch.hpp>
#include <vector>

#include "cuda_reference64.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "test_helpers.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;
namespace k = scratchnet::kernels;

namespace {

constexpr double kU = 0x1p-24, kLambda = 6.0;  // as test_cuda_helpers.h

int64_t outside(const std::vector<float>& got, const Ref64& ref, double L) {
  int64_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double tol = kLambda * kU * std::sqrt(L) * (std::fabs(ref.value[i]) + ref.norm[i]);
    if (std::fabs(got[i] - ref.value[i]) > tol) ++bad;
  }
  return bad;
}

std::vector<float> values(const Tensor& t) {
  return t.to_vector();
}

// Integers in [-2, 2], as exact_tensor() in test_cuda_helpers.h.
Tensor integers(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v = g.uniform(shape_numel(shape), -2.0f, 3.0f);
  for (float& e : v) e = std::min(2.0f, std::floor(e));
  return Tensor::from_vector(v, shape);
}

}  // namespace

TEST_CASE("tolerance rule: the CPU conv weight gradient passes, one dropped image fails",
          "[tolerance]") {
  // LeNet conv1 at batch 256: L = N*P*Q + 1 = 200,705, the longest reduction of the sweeps.
  const auto p = k::conv2d_params(256, 1, 28, 28, 6, 5, 5, 1, 2);
  Tensor x = testing::random_tensor({p.N, p.C, p.H, p.W}, 1);
  Tensor dy = testing::random_tensor({p.N, p.K, p.P, p.Q}, 2);
  Tensor dw0 = testing::random_tensor({p.K, p.C, p.R, p.S}, 3);
  const Ref64 ref =
      conv2d_backward_weight_ref64(p, x.data<float>(), dy.data<float>(), dw0.data<float>());
  const double L = double(p.N) * p.P * p.Q + 1;
  Tensor dw = dw0.clone();
  k::conv2d_backward_weight_cpu(p, x.data<float>(), dy.data<float>(), dw.data<float>(), nullptr);
  CHECK(outside(values(dw), ref, L) == 0);

  // The same sum without the last image (NCHW: the first N-1 images are a prefix).
  auto q = p;
  q.N = p.N - 1;
  Tensor dw_short = dw0.clone();
  k::conv2d_backward_weight_cpu(q, x.data<float>(), dy.data<float>(), dw_short.data<float>(),
                                nullptr);
  CHECK(outside(values(dw_short), ref, L) > int64_t(dw.numel()) * 9 / 10);
}

TEST_CASE("tolerance rule: CPU conv forward, data gradient and GEMM pass", "[tolerance]") {
  const auto p = k::conv2d_params(3, 64, 14, 14, 33, 3, 3, 2, 1);
  Tensor x = testing::random_tensor({p.N, p.C, p.H, p.W}, 4);
  Tensor w = testing::random_tensor({p.K, p.C, p.R, p.S}, 5);
  Tensor b = testing::random_tensor({p.K}, 6);
  Tensor y = Tensor::zeros({p.N, p.K, p.P, p.Q});
  k::conv2d_forward_cpu(p, x.data<float>(), w.data<float>(), b.data<float>(), y.data<float>());
  const Ref64 ry = conv2d_forward_ref64(p, x.data<float>(), w.data<float>(), b.data<float>());
  CHECK(outside(values(y), ry, double(p.C) * p.R * p.S + 1) == 0);

  Tensor dy = testing::random_tensor(y.shape(), 7), dx = testing::random_tensor(x.shape(), 8);
  const Ref64 rdx =
      conv2d_backward_data_ref64(p, dy.data<float>(), w.data<float>(), dx.data<float>());
  k::conv2d_backward_data_cpu(p, dy.data<float>(), w.data<float>(), dx.data<float>());
  CHECK(outside(values(dx), rdx, double(p.K) * p.R * p.S + 1) == 0);

  for (bool ta : {false, true}) {
    const auto g = k::gemm_params(ta, true, 70, 50, 3000, 0.75f, 0.5f);
    Tensor A = testing::random_tensor({70 * 3000}, 9), B = testing::random_tensor({50 * 3000}, 10);
    Tensor C = testing::random_tensor({70 * 50}, 11);
    const Ref64 rc = gemm_ref64(g, A.data<float>(), B.data<float>(), C.data<float>());
    k::gemm_cpu(g, A.data<float>(), B.data<float>(), C.data<float>());
    CHECK(outside(values(C), rc, 3001) == 0);
  }
}

TEST_CASE("tolerance rule: integer inputs make the float conv exact", "[tolerance]") {
  const auto p = k::conv2d_params(4, 16, 20, 20, 8, 3, 3, 1, 1);
  Tensor x = integers({p.N, p.C, p.H, p.W}, 12), dy = integers({p.N, p.K, p.P, p.Q}, 13);
  Tensor dw0 = integers({p.K, p.C, p.R, p.S}, 14), dw = dw0.clone();
  k::conv2d_backward_weight_cpu(p, x.data<float>(), dy.data<float>(), dw.data<float>(), nullptr);
  const Ref64 ref =
      conv2d_backward_weight_ref64(p, x.data<float>(), dy.data<float>(), dw0.data<float>());
  const auto got = values(dw);
  int nonzero = 0, wrong = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    nonzero += got[i] != 0.0f;
    wrong += static_cast<double>(got[i]) != ref.value[i];
  }
  CHECK(wrong == 0);
  CHECK(nonzero > static_cast<int>(got.size()) / 2);  // the data are not trivial
  // The values really are small integers in [-2, 2], all five of them.
  std::vector<int> seen(5, 0);
  int other = 0;
  for (float v : values(x)) {
    if (v == std::floor(v) && std::fabs(v) <= 2.0f)
      ++seen[static_cast<int>(v) + 2];
    else
      ++other;
  }
  CHECK(other == 0);
  for (int s : seen) CHECK(s > 0);
}
