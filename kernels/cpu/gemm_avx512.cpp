// The AVX-512 variant of the CPU GEMM (see kernels/cpu/gemm_variants.h):
// 16-float zmm registers, compiled with -mavx512f -mfma (CMakeLists.txt).
// Register tile 12 x 32: 24 accumulators + 2 B vectors + 1 broadcast of the
// 32 registers; per k, 2 loads and 12 broadcasts feed 24 FMAs.
#if !defined(__AVX512F__) || !defined(__FMA__)
#error "gemm_avx512.cpp must be compiled with -mavx512f -mfma"
#endif
#include <immintrin.h>

namespace scratchnet::kernels {
namespace {
struct Vec {
  using reg = __m512;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg bcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
};
}  // namespace
}  // namespace scratchnet::kernels

#include "kernels/cpu/gemm_kernel.h"

namespace scratchnet::kernels {
//                                                 MR NV  KC   MC    NC  FMA chains
const GemmVariant gemm_variant_avx512 = make_variant<12, 2, 384, 1152, 256, 24>("avx512");
}  // namespace scratchnet::kernels
