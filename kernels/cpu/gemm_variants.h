// The seam between the CPU GEMM's driver (kernels/cpu/gemm.cpp: checks,
// threads, tiles, scratch) and its per-instruction-set variants
// (kernels/cpu/gemm_<isa>.cpp: packing, micro-kernel, an FMA loop).
//
// Each variant is one translation unit compiled with its own target flags
// (CMakeLists.txt: -mavx2 -mfma, -mavx512f, or no AVX at all for "generic"),
// all of them from the one template body in kernels/cpu/gemm_kernel.h. The
// driver asks the CPU at run time (__builtin_cpu_supports) which ones it can
// execute and calls through this table, so one binary uses AVX-512 where the
// processor has it and AVX2 or SSE elsewhere, whatever -march it was built with.
#pragma once
#include <cstdint>

#include "kernels/gemm.h"

namespace scratchnet::kernels {

struct GemmVariant {
  const char* name;  // "avx512", "avx2", "generic": the SCRATCHNET_CPU_ISA values
  int mr, nr;        // register tile: rows of A broadcast, columns of B in vectors
  int kc, nc;        // cache blocking: the packed B block, kc x nc, stays in L2
  int mc;            // the most rows of a tile (bounds the packed A scratch)
  // C[i0:i0+mc, j0:j0+nc] = alpha op(A) op(B) + beta C over the whole depth K,
  // any mc and nc. ap and bp are scratch for ceil(mc/mr)*mr*min(kc,K) and
  // min(nc,this->nc)*min(kc,K) floats (nc rounded up to nr), 64-byte aligned.
  // a_packed: op(A) already packed whole by pack_a (nullptr: pack it here,
  // into ap).
  void (*tile)(const GemmParams& p, const float* A, const float* B, float* C, int i0, int mc,
               int j0, int nc, float* ap, float* bp, const float* a_packed);
  // Rows [i0, i0+mc) of op(A) (M x K; i0 a multiple of mr) into dst, which
  // holds all of op(A) packed, ceil(M/mr)*mr*K floats: for each depth slice
  // of kc, the panels tile() would pack for rows [0, M), so a tile of rows
  // i0 finds its slice k0 at dst + k0*Mpad + i0*kc. Disjoint row ranges
  // write disjoint floats (the driver packs them on several threads).
  void (*pack_a)(const GemmParams& p, const float* A, int i0, int mc, float* dst);
  // `iters` rounds of independent FMA chains, as many as the registers hold:
  // the core's peak FP32 rate for this instruction set. Returns the flops done.
  double (*fma_loop)(int64_t iters);
};

// Defined in kernels/cpu/gemm_<name>.cpp; only x86-64 builds have the last two.
extern const GemmVariant gemm_variant_generic;
extern const GemmVariant gemm_variant_avx2;
extern const GemmVariant gemm_variant_avx512;

}  // namespace scratchnet::kernels
