// CPU single-precision GEMM, row-major: C = alpha * op(A) * op(B) + beta * C.
//
// Layouts: A is M x K (K x M when trans_a), B is K x N (N x K when trans_b),
// C is M x N; lda/ldb/ldc are row strides, so sub-matrices work. beta == 0
// writes C without reading it (BLAS convention: a reused buffer's garbage,
// NaN included, never leaks into the result).
//
// The shape of the algorithm is the usual one (Goto / BLIS):
//   C is cut into tiles of up to MC x NC elements, the unit of OpenMP work.
//   For each tile, K is walked in slices of KC: the KC x NC slice of op(B) is
//   packed into micro-panels of NR columns, the MC x KC slice of op(A) into
//   micro-panels of MR rows (both zero-padded at the edges), and an MR x NR
//   register micro-kernel runs over every pair. Packing makes the inner loop
//   read both operands contiguously whatever the transposes and strides, and
//   the slices are sized for the caches: an A block (~MC*KC floats) stays in
//   L2 while each B micro-panel (KC*NR) sits in L1.
//   The micro-kernel is written with GCC/Clang vector extensions, 4, 8 or 16
//   floats wide (SSE, AVX2 or AVX-512, whichever -march allows), explicit FMA
//   where the target has it: in ISO C++ mode the compiler does not contract
//   a*b+c on its own.
//
// Threading: a call from outside any OpenMP region, big enough to pay for it,
// spreads its tiles over the threads; a call from inside a parallel region
// (conv2d parallelises over the batch and calls this per image) runs serially
// on the calling thread. Packing buffers are per thread and reused.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace scratchnet::kernels {

namespace {

// The widest vector the target has (a wider one than the target's registers
// would be split up by the compiler and change the calling convention).
#if defined(__AVX512F__)
constexpr int kVec = 16;
#elif defined(__AVX__)
constexpr int kVec = 8;
#else
constexpr int kVec = 4;
#endif
typedef float vfloat __attribute__((vector_size(kVec * sizeof(float))));

constexpr int MR = 6;  // micro-tile rows: MR x 2 accumulators + 2 B vectors fit the registers
constexpr int NR = 2 * kVec;  // micro-tile columns
constexpr int KC = 256;       // depth of one packed slice
constexpr int MC = 16 * MR;   // rows of a tile (A block 96 x 256 floats = 96 KiB, in L2)
constexpr int NC = 512;       // columns of a tile (a multiple of NR)
static_assert(NC % NR == 0, "tiles hold whole micro-panels");

inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vfloat v) {
  std::memcpy(p, &v, sizeof v);
}
inline vfloat broadcast(float x) {
  return vfloat{} + x;
}

inline vfloat fmadd(vfloat a, vfloat b, vfloat c) {
#if defined(__AVX512F__)
  return reinterpret_cast<vfloat>(_mm512_fmadd_ps(
      reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b), reinterpret_cast<__m512>(c)));
#elif defined(__FMA__)
  return reinterpret_cast<vfloat>(_mm256_fmadd_ps(
      reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b), reinterpret_cast<__m256>(c)));
#else
  return a * b + c;
#endif
}

// Rows [i0, i0+mc) x depth [k0, k0+kc) of op(A) into Ap: for each MR-row
// micro-panel, kc groups of MR values (one column of the panel each).
void pack_a(const GemmParams& p, const float* A, int i0, int mc, int k0, int kc, float* Ap) {
  for (int ip = 0; ip < mc; ip += MR) {
    const int mr = std::min(MR, mc - ip);
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
        rows[i] = A + static_cast<long>(i0 + ip + std::min(i, mr - 1)) * p.lda + k0;
      for (int k = 0; k < kc; ++k)
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? rows[i][k] : 0.0f;
    }
  }
}

// Depth [k0, k0+kc) x columns [j0, j0+nc) of op(B) into Bp: for each NR-column
// micro-panel, kc rows of NR values.
void pack_b(const GemmParams& p, const float* B, int k0, int kc, int j0, int nc, float* Bp) {
  for (int jp = 0; jp < nc; jp += NR) {
    const int nr = std::min(NR, nc - jp);
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
        const int kn = std::min(kStep, kc - k);
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

// C[0:mr, 0:nr] = alpha * (Ap-panel · B-panel) + beta * C, over depth kc.
// The B panel's rows are ldb_panel apart: NR when packed, ldb when read in place.
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, int ldb_panel,
                  float* c, int ldc, int mr, int nr, float alpha, float beta) {
  vfloat acc[MR][2] = {};
  for (int k = 0; k < kc; ++k, a += MR, b += ldb_panel) {
    const vfloat b0 = load(b), b1 = load(b + kVec);
    for (int i = 0; i < MR; ++i) {
      const vfloat ai = broadcast(a[i]);
      acc[i][0] = fmadd(ai, b0, acc[i][0]);
      acc[i][1] = fmadd(ai, b1, acc[i][1]);
    }
  }
  const vfloat va = broadcast(alpha), vb = broadcast(beta);
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i) {
      float* ci = c + static_cast<long>(i) * ldc;
      if (beta == 0.0f) {
        store(ci, va * acc[i][0]);
        store(ci + kVec, va * acc[i][1]);
      } else {
        store(ci, fmadd(va, acc[i][0], vb * load(ci)));
        store(ci + kVec, fmadd(va, acc[i][1], vb * load(ci + kVec)));
      }
    }
    return;
  }
  float tile[MR][NR];
  std::memcpy(tile, acc, sizeof tile);
  for (int i = 0; i < mr; ++i) {
    float* ci = c + static_cast<long>(i) * ldc;
    for (int j = 0; j < nr; ++j)
      ci[j] = beta == 0.0f ? alpha * tile[i][j] : alpha * tile[i][j] + beta * ci[j];
  }
}

// Scratch for packed panels, one pair per thread, grown as needed and kept:
// the engine calls gemm with the same few shapes every step.
struct PackBuffers {
  std::vector<float> a, b;
};
PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

// C[i0:i0+mc, j0:j0+nc] over the full depth K.
void gemm_tile(const GemmParams& p, const float* A, const float* B, float* C, int i0, int mc,
               int j0, int nc) {
  PackBuffers& buf = pack_buffers();
  const int mc_pad = (mc + MR - 1) / MR * MR, nc_pad = (nc + NR - 1) / NR * NR;
  const int kc_max = std::min(KC, p.K);
  // With only a few A panels, each packed B value would be used only a few
  // times: the copy would cost about as much as the arithmetic (conv2d at
  // LeNet's sizes). Then whole NR-column panels of an untransposed B are read
  // where they lie, and only the ragged last panel is packed.
  const bool b_in_place = !p.trans_b && mc <= 4 * MR;
  if (buf.a.size() < static_cast<std::size_t>(mc_pad) * kc_max)
    buf.a.resize(static_cast<std::size_t>(mc_pad) * kc_max);
  if (buf.b.size() < static_cast<std::size_t>(nc_pad) * kc_max)
    buf.b.resize(static_cast<std::size_t>(nc_pad) * kc_max);
  const int full_nc = nc / NR * NR;
  for (int k0 = 0; k0 < p.K; k0 += KC) {
    const int kc = std::min(KC, p.K - k0);
    // The first slice applies beta; later ones add to what it wrote.
    const float beta = k0 == 0 ? p.beta : 1.0f;
    if (!b_in_place)
      pack_b(p, B, k0, kc, j0, nc, buf.b.data());
    else if (full_nc < nc)
      pack_b(p, B, k0, kc, j0 + full_nc, nc - full_nc,
             buf.b.data() + static_cast<long>(full_nc) * kc);
    pack_a(p, A, i0, mc, k0, kc, buf.a.data());
    for (int jp = 0; jp < nc; jp += NR) {
      const bool direct = b_in_place && jp < full_nc;
      const float* bp = direct ? B + static_cast<long>(k0) * p.ldb + j0 + jp
                               : buf.b.data() + static_cast<long>(jp) * kc;
      for (int ip = 0; ip < mc; ip += MR) {
        micro_kernel(kc, buf.a.data() + static_cast<long>(ip) * kc, bp, direct ? p.ldb : NR,
                     C + static_cast<long>(i0 + ip) * p.ldc + j0 + jp, p.ldc, std::min(MR, mc - ip),
                     std::min(NR, nc - jp), p.alpha, beta);
      }
    }
  }
}

// K == 0 (or alpha == 0): C = beta * C, nothing to multiply.
void scale_c(const GemmParams& p, float* C) {
  for (int i = 0; i < p.M; ++i) {
    float* c = C + static_cast<long>(i) * p.ldc;
    for (int j = 0; j < p.N; ++j) c[j] = p.beta == 0.0f ? 0.0f : p.beta * c[j];
  }
}

}  // namespace

void gemm_cpu(const GemmParams& p, const float* A, const float* B, float* C) {
  require(p.M >= 0 && p.N >= 0 && p.K >= 0, "gemm",
          "sizes must be >= 0, got M=" + std::to_string(p.M) + " N=" + std::to_string(p.N) +
              " K=" + std::to_string(p.K));
  // A row stride shorter than the row would make rows overlap: a caller bug.
  require(p.lda >= (p.trans_a ? p.M : p.K) && p.ldb >= (p.trans_b ? p.K : p.N) && p.ldc >= p.N,
          "gemm",
          "leading dimensions too small: lda=" + std::to_string(p.lda) +
              " ldb=" + std::to_string(p.ldb) + " ldc=" + std::to_string(p.ldc) + " for M=" +
              std::to_string(p.M) + " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K));
  if (p.M == 0 || p.N == 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) {
    scale_c(p, C);
    return;
  }
  // Below ~1 MFLOP the fork/join costs more than it saves.
  const double flops = 2.0 * p.M * p.N * p.K;
  const int threads = omp_in_parallel() || flops < 1e6 ? 1 : omp_get_max_threads();
  int nc = NC;
  const int m_tiles = (p.M + MC - 1) / MC;
  if (threads > 1 && m_tiles * ((p.N + nc - 1) / nc) < 4 * threads) {
    // Too few tiles to balance: narrow them (never below one micro-panel).
    const int want_n_tiles = (4 * threads + m_tiles - 1) / m_tiles;
    nc = std::max(NR, ((p.N + want_n_tiles - 1) / want_n_tiles + NR - 1) / NR * NR);
  }
  const int n_tiles = (p.N + nc - 1) / nc;
  const int tiles = m_tiles * n_tiles;
  if (threads == 1) {
    for (int t = 0; t < tiles; ++t) {
      const int i0 = (t / n_tiles) * MC, j0 = (t % n_tiles) * nc;
      gemm_tile(p, A, B, C, i0, std::min(MC, p.M - i0), j0, std::min(nc, p.N - j0));
    }
    return;
  }
  RegionErrors errors;  // a failed scratch allocation must not escape the region
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int t = 0; t < tiles; ++t) {
    errors.run([&] {
      const int i0 = (t / n_tiles) * MC, j0 = (t % n_tiles) * nc;
      gemm_tile(p, A, B, C, i0, std::min(MC, p.M - i0), j0, std::min(nc, p.N - j0));
    });
  }
  errors.rethrow();
}

}  // namespace scratchnet::kernels
