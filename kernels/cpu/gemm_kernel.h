// The body of one CPU GEMM variant: packing, the register micro-kernel, the
// loop over one tile, and an FMA loop for the peak. Included only by the
// kernels/cpu/gemm_<isa>.cpp files, after each has defined `Vec`, its vector
// type and the handful of operations the micro-kernel needs:
//
//   struct Vec {
//     using reg = ...;                  // one vector register of W floats
//     static constexpr int W = ...;
//     static reg zero();
//     static reg load(const float*);    // unaligned
//     static void store(float*, reg);   // unaligned
//     static reg bcast(const float*);   // one float into every lane
//     static reg fma(reg a, reg b, reg c);  // a * b + c
//     static reg mul(reg a, reg b);
//   };
//
// Everything here is in an anonymous namespace and uses no library templates:
// each variant is compiled with different target flags, and an inline
// function shared between them (one std::min instantiation, say) would be
// merged by the linker into a single copy, maybe the AVX-512 one, which the
// generic path would then call on a CPU without AVX-512.
//
// The algorithm (Goto / BLIS), for a tile of C (mc x nc):
//   for each depth slice k0 of KC:
//     pack op(A)[tile rows, k0:k0+kc] into MR-row micro-panels
//       (kc x MR each, column by column), once for the whole tile;
//     for each block of NC columns:
//       pack op(B)[k0:k0+kc, block] into NR-column micro-panels
//         (kc x NR each, row by row): the B block, KC x NC, sized for L2;
//       for each A micro-panel (MR x kc, stays in L1 while it is used):
//         for each B micro-panel (streamed from L2):
//           micro-kernel: an MR x NR block of C in MR*NR/W vector registers;
//           per k, NR/W vector loads of B, MR broadcasts of A, MR*NR/W FMAs.
// Each packed value is used many times: A's for every column of the tile,
// B's for every row, so packing costs ~1/(2 nc) and ~1/(2 mc) of the
// arithmetic. Packing zero-pads the ragged edges, so the micro-kernel always
// computes a whole MR x NR block and only its write-back knows about edges.
#pragma once
#include <cstring>

#include "kernels/cpu/gemm_variants.h"

namespace scratchnet::kernels {
namespace {

inline int imin(int a, int b) {
  return a < b ? a : b;
}

// Rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) into Ap: for each MR-row
// micro-panel, kc groups of MR values (one column of the panel each).
template <int MR>
void pack_a(const GemmParams& p, const float* A, int i0, int mc, int k0, int kc, float* Ap) {
  for (int ip = 0; ip < mc; ip += MR) {
    const int mr = imin(MR, mc - ip);
    float* dst = Ap + static_cast<long>(ip) * kc;
    // Both orders write the panel sequentially; the source is read along
    // its contiguous dimension where there is one (Aᵀ rows), else as MR
    // streams that each advance one element per k.
    if (p.trans_a) {
      for (int k = 0; k < kc; ++k) {
        const float* src = A + static_cast<long>(k0 + k) * p.lda + i0 + ip;
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? src[i] : 0.0f;
      }
    } else {
      const float* rows[MR];
      for (int i = 0; i < MR; ++i)
        rows[i] = A + static_cast<long>(i0 + ip + imin(i, mr - 1)) * p.lda + k0;
      if (mr == MR) {
        for (int k = 0; k < kc; ++k)
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) dst[k * MR + i] = rows[i][k];
      } else {
        for (int k = 0; k < kc; ++k)
          for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? rows[i][k] : 0.0f;
      }
    }
  }
}

// Depth [k0, k0+kc) x columns [j0, j0+nc) of op(B) into Bp: for each NR-column
// micro-panel, kc rows of NR values.
template <int NR>
void pack_b(const GemmParams& p, const float* B, int k0, int kc, int j0, int nc, float* Bp) {
  for (int jp = 0; jp < nc; jp += NR) {
    const int nr = imin(NR, nc - jp);
    float* dst = Bp + static_cast<long>(jp) * kc;
    if (!p.trans_b) {
      for (int k = 0; k < kc; ++k) {
        const float* src = B + static_cast<long>(k0 + k) * p.ldb + j0 + jp;
        float* d = dst + k * NR;
        if (nr == NR) {
          std::memcpy(d, src, sizeof(float) * NR);
        } else {
          for (int j = 0; j < nr; ++j) d[j] = src[j];
          for (int j = nr; j < NR; ++j) d[j] = 0.0f;
        }
      }
    } else {
      // A transposing copy, a few k at a time: each source row contributes
      // one cache line per step. (Walking all NR rows for every single k
      // thrashes L1 when ldb is a multiple of 4 KiB: the rows share a set.)
      constexpr int kStep = 16;
      for (int k = 0; k < kc; k += kStep) {
        const int kn = imin(kStep, kc - k);
        float* d = dst + static_cast<long>(k) * NR;
        for (int j = 0; j < NR; ++j) {
          if (j < nr) {
            const float* src = B + static_cast<long>(j0 + jp + j) * p.ldb + k0 + k;
            for (int kk = 0; kk < kn; ++kk) d[kk * NR + j] = src[kk];
          } else {
            for (int kk = 0; kk < kn; ++kk) d[kk * NR + j] = 0.0f;
          }
        }
      }
    }
  }
}

// C[0:mr, 0:nr] = alpha * (A-panel · B-panel) + beta * C, over depth kc.
// The B panel's rows are ldb_panel apart: NR when packed, ldb when read in place.
// NV vectors of W floats make one row of the tile: NR = NV * W.
// The A panel's columns are ASTEP floats apart (the packing's MR): a kernel
// with fewer rows than the packing serves a ragged last panel.
template <int MR, int NV, int ASTEP = MR>
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, long ldb_panel,
                  float* c, long ldc, int mr, int nr, float alpha, float beta) {
  constexpr int W = Vec::W, NR = NV * W;
  using reg = typename Vec::reg;
  reg acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = Vec::zero();
  // The C block is written at the end: ask for its lines now, while the
  // k loop hides the latency.
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < NR; j += 16) __builtin_prefetch(c + i * ldc + j, 1);
  for (int k = 0; k < kc; ++k, a += ASTEP, b += ldb_panel) {
    // The next A values, a few iterations ahead (the B panel streams in
    // sequence, which the hardware prefetcher follows on its own).
    __builtin_prefetch(a + 8 * ASTEP);
    reg bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = Vec::load(b + j * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const reg ai = Vec::bcast(a + i);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = Vec::fma(ai, bv[j], acc[i][j]);
    }
  }
  const float alpha_beta[2] = {alpha, beta};
  const reg va = Vec::bcast(&alpha_beta[0]), vb = Vec::bcast(&alpha_beta[1]);
  if (mr == MR && nr == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        if (beta == 0.0f)
          Vec::store(ci + j * W, Vec::mul(va, acc[i][j]));
        else
          Vec::store(ci + j * W, Vec::fma(va, acc[i][j], Vec::mul(vb, Vec::load(ci + j * W))));
      }
    }
    return;
  }
  alignas(64) float tile[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) Vec::store(&tile[i][j * W], acc[i][j]);
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < nr; ++j)
      ci[j] = beta == 0.0f ? alpha * tile[i][j] : alpha * tile[i][j] + beta * ci[j];
  }
}

// C[i0:i0+mc, j0:j0+nc] over the full depth K (GemmVariant::tile).
template <int MR, int NV, int KC, int NC>
void gemm_tile(const GemmParams& p, const float* A, const float* B, float* C, int i0, int mc,
               int j0, int nc, float* ap, float* bp, const float* a_packed) {
  constexpr int NR = NV * Vec::W;
  const long m_pad = static_cast<long>(p.M + MR - 1) / MR * MR;
  // With only a few A panels, each packed B value would be used only a few
  // times: the copy would cost about as much as the arithmetic (conv2d at
  // LeNet's sizes). Then whole NR-column panels of an untransposed B are read
  // where they lie, and only a ragged last panel is packed. Not when B's rows
  // are a page or more apart (a linear layer's data gradient, dy w with w
  // 4096 x 9600): a panel then reads 128 bytes from each of kc pages, which
  // neither the TLB nor the hardware prefetcher follow (16 GFLOP/s), while
  // pack_b copies NC-wide rows, 1 KiB per page visited.
  const bool b_in_place = !p.b_source && !p.trans_b && mc <= 4 * MR && p.ldb < 1024;
  for (int k0 = 0; k0 < p.K; k0 += KC) {
    const int kc = imin(KC, p.K - k0);
    // The first slice applies beta; later ones add to what it wrote.
    const float beta = k0 == 0 ? p.beta : 1.0f;
    // All the tile's rows at once: packed once, used for every column block
    // (or found in the caller's packing of the whole of A).
    const float* a_slice = ap;
    if (a_packed)
      a_slice = a_packed + static_cast<long>(k0) * m_pad + static_cast<long>(i0) * kc;
    else
      pack_a<MR>(p, A, i0, mc, k0, kc, ap);
    for (int jb = 0; jb < nc; jb += NC) {
      const int nb = imin(NC, nc - jb), full_nb = nb / NR * NR;
      if (p.b_source)
        p.b_source->pack(p.b_source->ctx, k0, kc, j0 + jb, nb, NR, bp);
      else if (!b_in_place)
        pack_b<NR>(p, B, k0, kc, j0 + jb, nb, bp);
      else if (full_nb < nb)
        pack_b<NR>(p, B, k0, kc, j0 + jb + full_nb, nb - full_nb,
                   bp + static_cast<long>(full_nb) * kc);
      for (int ip = 0; ip < mc; ip += MR) {
        const float* a = a_slice + static_cast<long>(ip) * kc;
        float* c = C + static_cast<long>(i0 + ip) * p.ldc + j0 + jb;
        for (int jp = 0; jp < nb; jp += NR) {
          const bool direct = b_in_place && jp < full_nb;
          const float* b = direct ? B + static_cast<long>(k0) * p.ldb + j0 + jb + jp
                                  : bp + static_cast<long>(jp) * kc;
          const int mr = imin(MR, mc - ip);
          const long ldb_panel = direct ? p.ldb : NR;
          // A ragged last panel (64 rows are 5 panels of 12 and 4 rows) runs
          // a kernel of a third or two thirds the height instead of
          // multiplying zeros: each element of C still sees the same FMAs
          // in the same order, so the bits do not change.
          if (MR % 3 == 0 && mr <= MR / 3)
            micro_kernel<MR / 3, NV, MR>(kc, a, b, ldb_panel, c + jp, p.ldc, mr,
                                         imin(NR, nb - jp), p.alpha, beta);
          else if (MR % 3 == 0 && mr <= 2 * MR / 3)
            micro_kernel<2 * MR / 3, NV, MR>(kc, a, b, ldb_panel, c + jp, p.ldc, mr,
                                             imin(NR, nb - jp), p.alpha, beta);
          else
            micro_kernel<MR, NV>(kc, a, b, ldb_panel, c + jp, p.ldc, mr, imin(NR, nb - jp),
                                 p.alpha, beta);
        }
      }
    }
  }
}

// Rows [i0, i0+mc) of op(A) (i0 a multiple of MR), every depth slice, where
// the packing of the whole of op(A) puts them (GemmVariant::pack_a).
template <int MR, int KC>
void pack_a_rows(const GemmParams& p, const float* A, int i0, int mc, float* dst) {
  const long m_pad = static_cast<long>(p.M + MR - 1) / MR * MR;
  for (int k0 = 0; k0 < p.K; k0 += KC) {
    const int kc = imin(KC, p.K - k0);
    pack_a<MR>(p, A, i0, mc, k0, kc,
               dst + static_cast<long>(k0) * m_pad + static_cast<long>(i0) * kc);
  }
}

// CHAINS independent accumulators, each x = x * m + a per round: more chains
// than the FMA latency times the FMA units, so the units never wait.
template <int CHAINS>
double fma_loop(int64_t iters) {
  using reg = typename Vec::reg;
  const float consts[2] = {0.999f, 1e-3f};
  const reg m = Vec::bcast(&consts[0]), add = Vec::bcast(&consts[1]);
  // Different starting values: identical chains would be one chain to the
  // compiler, which computes it once.
  reg acc[CHAINS];
#pragma GCC unroll 32
  for (int c = 0; c < CHAINS; ++c) {
    const float start = 0.5f + 0.01f * c;
    acc[c] = Vec::bcast(&start);
  }
  for (int64_t n = 0; n < iters; ++n) {
#pragma GCC unroll 32
    for (int c = 0; c < CHAINS; ++c) acc[c] = Vec::fma(acc[c], m, add);
  }
  // The result must look used, or the loop is dead code.
  reg sum = acc[0];
  for (int c = 1; c < CHAINS; ++c) sum = Vec::fma(sum, m, acc[c]);
  alignas(64) float out[Vec::W];
  Vec::store(out, sum);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * Vec::W * CHAINS * static_cast<double>(iters);
}

template <int MR, int NV, int KC, int MC, int NC, int CHAINS>
constexpr GemmVariant make_variant(const char* name) {
  static_assert(MC % MR == 0 && NC % (NV * Vec::W) == 0, "blocks hold whole micro-panels");
  return GemmVariant{name,
                     MR,
                     NV * Vec::W,
                     KC,
                     NC,
                     MC,
                     &gemm_tile<MR, NV, KC, NC>,
                     &pack_a_rows<MR, KC>,
                     &fma_loop<CHAINS>};
}

}  // namespace
}  // namespace scratchnet::kernels
