// The portable variant of the CPU GEMM (see kernels/cpu/gemm_variants.h):
// GCC/Clang vector extensions 4 floats wide, which every x86-64 (SSE2) and
// ARM (NEON) CPU has; on x86 CMakeLists.txt compiles this file with -mno-avx,
// so it is the fallback for any CPU whatever -march the build used. No FMA
// instruction: in ISO C++ mode the compiler does not fuse a * b + c.
// Register tile 6 x 8: 12 accumulators + 2 B vectors + 1 broadcast of SSE's
// 16 registers.
#if defined(__AVX__)
#error "gemm_generic.cpp must be compiled without AVX (-mno-avx)"
#endif

namespace scratchnet::kernels {
namespace {
struct Vec {
  typedef float reg __attribute__((vector_size(16)));
  static constexpr int W = 4;
  static reg zero() { return reg{0.0f, 0.0f, 0.0f, 0.0f}; }
  static reg load(const float* p) {
    reg v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, reg v) { __builtin_memcpy(p, &v, sizeof v); }
  static reg bcast(const float* p) { return reg{*p, *p, *p, *p}; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg mul(reg a, reg b) { return a * b; }
};
}  // namespace
}  // namespace scratchnet::kernels

#include "kernels/cpu/gemm_kernel.h"

namespace scratchnet::kernels {
//                                                  MR NV  KC   MC    NC  FMA chains
const GemmVariant gemm_variant_generic = make_variant<6, 2, 256, 1152, 256, 12>("generic");
}  // namespace scratchnet::kernels
