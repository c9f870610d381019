// gemm_cpu against a naive triple loop in double precision: all four
// transpose combinations, alpha and beta, odd sizes that cross the blocking
// edges, and leading dimensions larger than the packed row length. Every
// instruction-set variant of the micro-kernel this CPU runs (avx512, avx2,
// generic: kernels/cpu/gemm_variants.h) goes through the same cases, once
// through gemm_cpu and once with op(A) packed beforehand (gemm_cpu_pack_a +
// gemm_cpu_prepacked_a), and once more with op(B) from a GemmBSource; all
// must give the same bits.
//
// Tolerance rule: |got - want| <= atol + rtol*|want| with
// atol = rtol = 1e-5 * sqrt(K/16 + 1). Operands are uniform in [-1, 1); each
// float product and sum rounds by ~6e-8 relative, and over a length-K
// reduction those errors add up like a random walk (~sqrt(K) terms of size
// ~sqrt(K)/3), so the bound keeps a ~10x margin at every K tested and grows
// at the rate the error does.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
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
void run_case(const std::string& variant, bool ta, bool tb, int M, int N, int K, float alpha,
              float beta, int pad, uint64_t seed) {
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
  kernels::gemm_cpu_with(variant, p, A.data(), B.data(), C.data());
  INFO(variant << " trans_a=" << ta << " trans_b=" << tb << " M=" << M << " N=" << N << " K=" << K
               << " alpha=" << alpha << " beta=" << beta << " pad=" << pad);
  const double tol = 1e-5 * tolerance_scale(K);
  require_close(C, want, tol, tol, "C");

  // The same product with op(A) packed beforehand (conv2d's weights): the
  // same packed values through the same tiles, so the same bits.
  std::vector<float> C2 = random_vec(static_cast<std::size_t>(M) * p.ldc, seed + 2);
  std::vector<float> packed(kernels::gemm_cpu_packed_a_floats(p, variant));
  kernels::gemm_cpu_pack_a(p, A.data(), packed.data(), variant);
  kernels::gemm_cpu_prepacked_a(p, packed.data(), B.data(), C2.data(), variant);
  CHECK(C2 == C);

  // And with op(B) written on demand by a GemmBSource (conv2d's implicit
  // im2col) instead of read from B: it must receive exactly the panels the
  // GEMM would pack itself, zero past the last column, so again the same bits.
  struct Source {
    const kernels::GemmParams* p;
    const float* B;
  } ctx{&p, B.data()};
  kernels::GemmBSource source;
  source.ctx = &ctx;
  source.pack = [](const void* c, int k0, int kc, int j0, int nc, int nr, float* dst) {
    const Source& s = *static_cast<const Source*>(c);
    for (int jp = 0; jp < nc; jp += nr)
      for (int k = 0; k < kc; ++k)
        for (int j = 0; j < nr; ++j) {
          const int col = j0 + jp + j, row = k0 + k;
          const bool inside = jp + j < nc;
          const std::size_t at = s.p->trans_b ? static_cast<std::size_t>(col) * s.p->ldb + row
                                              : static_cast<std::size_t>(row) * s.p->ldb + col;
          dst[static_cast<std::size_t>(jp) * kc + static_cast<std::size_t>(k) * nr + j] =
              inside ? s.B[at] : 0.0f;
        }
  };
  kernels::GemmParams ps = p;
  ps.b_source = &source;
  std::vector<float> C3 = random_vec(static_cast<std::size_t>(M) * p.ldc, seed + 2);
  kernels::gemm_cpu_prepacked_a(ps, packed.data(), nullptr, C3.data(), variant);
  CHECK(C3 == C);
}

}  // namespace

TEST_CASE("gemm_cpu matches a naive loop for every transpose combination", "[gemm]") {
  // Big calls split C into tiles over the threads: 1 thread, 2, and an odd 3.
  const ThreadCount threads(GENERATE(1, 2, 3));
  // Edges of every register tile (6 x 8, 6 x 16, 12 x 32), of the cache
  // blocks (KC = 256 or 384, NC = 192, 256) and of a one-thread tile (1152
  // rows): one short of a multiple, one over.
  const int sizes[][3] = {
      {1, 1, 1},     {7, 7, 7},       {1, 33, 7},   {33, 1, 130},  {130, 7, 33},  {33, 130, 7},
      {64, 64, 64},  {130, 131, 129}, {6, 16, 300}, {97, 50, 257}, {12, 32, 256}, {11, 31, 255},
      {13, 33, 513}, {95, 511, 20},   {97, 513, 3}, {25, 600, 40}, {5, 70, 385},  {1160, 40, 9},
      // few rows of C, B rows 1024+ floats apart: B packed, not read in place
      {20, 1100, 400}, {30, 1030, 70}};
  for (const std::string& variant : kernels::gemm_cpu_variants()) {
    uint64_t seed = 10;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const auto& s : sizes)
          run_case(variant, ta, tb, s[0], s[1], s[2], 1.0f, 0.0f, 0, seed++);
  }
}

TEST_CASE("gemm_cpu applies alpha and beta and honours leading dimensions", "[gemm]") {
  for (const std::string& variant : kernels::gemm_cpu_variants()) {
    uint64_t seed = 100;
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        run_case(variant, ta, tb, 33, 130, 7, 0.5f, 1.0f, 3, seed++);
        run_case(variant, ta, tb, 130, 33, 65, -2.0f, 0.25f, 5, seed++);
        run_case(variant, ta, tb, 7, 1, 33, 1.0f, -1.0f, 1, seed++);
        run_case(variant, ta, tb, 200, 300, 129, 1.5f, 0.0f, 7, seed++);
        run_case(variant, ta, tb, 100, 520, 300, 1.0f, 1.0f, 2, seed++);
      }
  }
}

TEST_CASE("gemm_cpu picks a variant this CPU runs and lists the ones it has", "[gemm]") {
  const auto variants = kernels::gemm_cpu_variants();
  auto has = [&](const std::string& v) {
    return std::find(variants.begin(), variants.end(), v) != variants.end();
  };
  // The portable one runs everywhere and is the last resort.
  REQUIRE(!variants.empty());
  CHECK(variants.back() == "generic");
  CHECK(has(kernels::gemm_cpu_variant()));
#if defined(__x86_64__)
  // The run-time check finds what the CPU has, whatever -march built this test.
  CHECK(has("avx2") == (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")));
  CHECK(has("avx512") == (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")));
  // Without SCRATCHNET_CPU_ISA the widest wins.
  if (!std::getenv("SCRATCHNET_CPU_ISA")) CHECK(kernels::gemm_cpu_variant() == variants.front());
#endif
  auto p = kernels::gemm_params(false, false, 2, 2, 2);
  std::vector<float> A(4, 1.0f), B(4, 1.0f), C(4);
  CHECK_THROWS_WITH(kernels::gemm_cpu_with("avx1024", p, A.data(), B.data(), C.data()),
                    Catch::Contains("avx1024") && Catch::Contains("generic"));
  CHECK_THROWS_AS(kernels::cpu_fma_loop("avx1024", 1), ValueError);
  for (const auto& v : variants) {
    // Flops per round: 2 per lane per chain, at least 4 lanes and 8 chains.
    const double one = kernels::cpu_fma_loop(v, 1);
    CHECK(one >= 2 * 4 * 8);
    CHECK(kernels::cpu_fma_loop(v, 10) == 10 * one);
  }
}

TEST_CASE("gemm_cpu with beta 0 overwrites C without reading it", "[gemm]") {
  // BLAS convention: beta == 0 means C is output only, so garbage (even NaN)
  // left in a reused buffer must not leak into the result.
  // Big enough for whole register tiles of every variant and ragged edges.
  const int M = 25, N = 70, K = 5;
  auto p = kernels::gemm_params(false, false, M, N, K);
  std::vector<float> A = random_vec(M * K, 1), B = random_vec(K * N, 2);
  std::vector<float> want(M * N, 0.0f);
  naive_gemm(p, A, B, want);
  for (const std::string& variant : kernels::gemm_cpu_variants()) {
    INFO(variant);
    std::vector<float> C(M * N, std::numeric_limits<float>::quiet_NaN());
    kernels::gemm_cpu_with(variant, p, A.data(), B.data(), C.data());
    require_close(C, want, 1e-5 * tolerance_scale(K), 1e-5 * tolerance_scale(K), "C");
  }
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
