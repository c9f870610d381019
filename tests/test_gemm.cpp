// gemm_cpu against a naive triple loop in double precision: all four
// transpose combinations, alpha and beta, odd sizes that cross the blocking
// edges, and leading dimensions larger than the packed row length.
//
// Tolerance rule: |got - want| <= atol + rtol*|want| with
// atol = rtol = 1e-5 * sqrt(K/16 + 1). Operands are uniform in [-1, 1); each
// float product and sum rounds by ~6e-8 relative, and over a length-K
// reduction those errors add up like a random walk (~sqrt(K) terms of size
// ~sqrt(K)/3), so the bound keeps a ~10x margin at every K tested and grows
// at the rate the error does.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/gemm.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::require_close;
using scratchnet::testing::ThreadCount;
using scratchnet::testing::tolerance_scale;

namespace {

std::vector<float> random_vec(std::size_t n, uint64_t seed) {
  Generator g(seed);
  return g.uniform(static_cast<int64_t>(n), -1.0f, 1.0f);
}

// C = alpha op(A) op(B) + beta C, in double, same storage conventions as gemm_cpu.
void naive_gemm(const kernels::GemmParams& p, const std::vector<float>& A,
                const std::vector<float>& B, std::vector<float>& C) {
  for (int i = 0; i < p.M; ++i)
    for (int j = 0; j < p.N; ++j) {
      double acc = 0.0;
      for (int k = 0; k < p.K; ++k) {
        const double a = p.trans_a ? A[static_cast<std::size_t>(k) * p.lda + i]
                                   : A[static_cast<std::size_t>(i) * p.lda + k];
        const double b = p.trans_b ? B[static_cast<std::size_t>(j) * p.ldb + k]
                                   : B[static_cast<std::size_t>(k) * p.ldb + j];
        acc += a * b;
      }
      float& c = C[static_cast<std::size_t>(i) * p.ldc + j];
      const double prev = p.beta == 0.0f ? 0.0 : p.beta * static_cast<double>(c);
      c = static_cast<float>(p.alpha * acc + prev);
    }
}

// Runs one configuration; pad adds that many unused columns to every leading
// dimension, so a kernel that assumes packed rows reads or writes the wrong
// elements (the padding columns of C must stay untouched).
void run_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta, int pad,
              uint64_t seed) {
  auto p = kernels::gemm_params(ta, tb, M, N, K, alpha, beta);
  p.lda += pad;
  p.ldb += pad;
  p.ldc += pad;
  const std::size_t a_rows = ta ? K : M, b_rows = tb ? N : K;
  std::vector<float> A = random_vec(a_rows * p.lda, seed);
  std::vector<float> B = random_vec(b_rows * p.ldb, seed + 1);
  std::vector<float> C = random_vec(static_cast<std::size_t>(M) * p.ldc, seed + 2);
  std::vector<float> want = C;
  naive_gemm(p, A, B, want);
  kernels::gemm_cpu(p, A.data(), B.data(), C.data());
  INFO("trans_a=" << ta << " trans_b=" << tb << " M=" << M << " N=" << N << " K=" << K
                  << " alpha=" << alpha << " beta=" << beta << " pad=" << pad);
  const double tol = 1e-5 * tolerance_scale(K);
  require_close(C, want, tol, tol, "C");
}

}  // namespace

TEST_CASE("gemm_cpu matches a naive loop for every transpose combination", "[gemm]") {
  // Big calls split C into tiles over the threads: 1 thread, 2, and an odd 3.
  const ThreadCount threads(GENERATE(1, 2, 3));
  const int sizes[][3] = {{1, 1, 1},    {7, 7, 7},    {1, 33, 7},      {33, 1, 130}, {130, 7, 33},
                          {33, 130, 7}, {64, 64, 64}, {130, 131, 129}, {6, 16, 300}, {97, 50, 257}};
  uint64_t seed = 10;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& s : sizes) run_case(ta, tb, s[0], s[1], s[2], 1.0f, 0.0f, 0, seed++);
}

TEST_CASE("gemm_cpu applies alpha and beta and honours leading dimensions", "[gemm]") {
  uint64_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      run_case(ta, tb, 33, 130, 7, 0.5f, 1.0f, 3, seed++);
      run_case(ta, tb, 130, 33, 65, -2.0f, 0.25f, 5, seed++);
      run_case(ta, tb, 7, 1, 33, 1.0f, -1.0f, 1, seed++);
      run_case(ta, tb, 200, 300, 129, 1.5f, 0.0f, 7, seed++);
    }
}

TEST_CASE("gemm_cpu with beta 0 overwrites C without reading it", "[gemm]") {
  // BLAS convention: beta == 0 means C is output only, so garbage (even NaN)
  // left in a reused buffer must not leak into the result.
  const int M = 9, N = 17, K = 5;
  auto p = kernels::gemm_params(false, false, M, N, K);
  std::vector<float> A = random_vec(M * K, 1), B = random_vec(K * N, 2);
  std::vector<float> C(M * N, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> want(M * N, 0.0f);
  naive_gemm(p, A, B, want);
  kernels::gemm_cpu(p, A.data(), B.data(), C.data());
  require_close(C, want, 1e-5 * tolerance_scale(K), 1e-5 * tolerance_scale(K), "C");
}

TEST_CASE("gemm_cpu with K = 0 scales C by beta", "[gemm]") {
  auto p = kernels::gemm_params(false, false, 3, 4, 0, 1.0f, 0.5f);
  std::vector<float> C(12, 2.0f);
  kernels::gemm_cpu(p, nullptr, nullptr, C.data());
  for (float c : C) CHECK(c == 1.0f);
  // M = 0 or N = 0: nothing to do, nothing touched.
  auto q = kernels::gemm_params(false, false, 0, 4, 3);
  kernels::gemm_cpu(q, nullptr, nullptr, nullptr);
}

TEST_CASE("gemm rejects negative sizes and short leading dimensions", "[gemm]") {
  CHECK_THROWS_AS(kernels::gemm_params(false, false, -1, 2, 2), ShapeError);
  CHECK_THROWS_WITH(kernels::gemm_params(false, false, 2, 2, -3), Catch::Contains("gemm"));
  std::vector<float> A(64), B(64), C(64);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto p = kernels::gemm_params(ta, tb, 3, 4, 5);
      CHECK_NOTHROW(kernels::gemm_cpu(p, A.data(), B.data(), C.data()));
      auto bad = p;
      bad.lda -= 1;
      CHECK_THROWS_AS(kernels::gemm_cpu(bad, A.data(), B.data(), C.data()), ShapeError);
      CHECK_THROWS_WITH(
          kernels::gemm_cpu(bad, A.data(), B.data(), C.data()),
          Catch::Contains("gemm") && Catch::Contains("lda=" + std::to_string(bad.lda)));
      bad = p;
      bad.ldb -= 1;
      CHECK_THROWS_AS(kernels::gemm_cpu(bad, A.data(), B.data(), C.data()), ShapeError);
      bad = p;
      bad.ldc -= 1;
      CHECK_THROWS_AS(kernels::gemm_cpu(bad, A.data(), B.data(), C.data()), ShapeError);
      bad = p;
      bad.M = -1;
      CHECK_THROWS_AS(kernels::gemm_cpu(bad, A.data(), B.data(), C.data()), ShapeError);
    }
}
