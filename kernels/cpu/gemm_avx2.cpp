// The AVX2 variant of the CPU GEMM (see kernels/cpu/gemm_variants.h):
// 8-float ymm registers, compiled with -mavx2 -mfma (CMakeLists.txt).
// Register tile 6 x 16: 12 accumulators + 2 B vectors + 1 broadcast of the
// 16 registers; per k, 2 loads and 6 broadcasts feed 12 FMAs.
#if !defined(__AVX2__) || !defined(__FMA__) || defined(__AVX512F__)
#error "gemm_avx2.cpp must be compiled with -mavx2 -mfma -mno-avx512f"
#endif
#include <immintrin.h>

namespace scratchnet::kernels {
namespace {
struct Vec {
  using reg = __m256;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
};
}  // namespace
}  // namespace scratchnet::kernels

#include "kernels/cpu/gemm_kernel.h"

namespace scratchnet::kernels {
//                                               MR NV  KC   MC    NC  FMA chains
const GemmVariant gemm_variant_avx2 = make_variant<6, 2, 256, 1152, 192, 12>("avx2");
}  // namespace scratchnet::kernels
