// Internal to kernels/cuda/conv2d.cu: the implicit-GEMM main loop shared by
// the convolution's forward, data-gradient and weight-gradient kernels.
//
//   C (M, Ncols) = A (M, Kred) B (Kred, Ncols), strict FP32 (fmaf, no TF32),
//   each output element summed by one thread over kr = kbeg .. kend-1 in
//   ascending order (so its bits do not depend on the tile shape).
//
// The matrices never exist in memory: an Op (conv2d.cu) tells the tile loader
// where element (m, kr) of A and (kr, n) of B live in the tensors, or that it
// is a zero (padding, a stride tap that reads nothing, past an edge), and
// what the epilogue does with C (m, n).
//
// Block tile BM x BN x BK (BM, BN in {64, 128}, BK = 8), BM * BN / 64
// threads, each an 8 x 8 micro-tile held in registers: rows ty*4+{0..3} and
// BM/2+ty*4+{0..3}, columns tx*4+{0..3} and BN/2+tx*4+{0..3}; a warp is a
// 4 (ty) x 8 (tx) patch, so its float4 reads of As/Bs touch 4 and 8 distinct
// addresses (one shared-memory wavefront each), as in gemm.cu.
// Shared memory: As[k][m], Bs[k][n], row pitch +4 floats, double-buffered;
// the next k-step is fetched into registers while the current one is
// multiplied, one __syncthreads per k-step.
// Loader mapping (both chosen so that per-thread index arithmetic is hoisted):
//   A: thread t owns k-offset t % BK of every k-step (its row of A is
//      decoded once per k-step, then reused for EA rows m);
//   B: thread t owns column n0 + t % BN for the whole block (its column is
//      decoded once per block), and EB k-offsets per k-step.
// Row sums of A (the conv bias gradient) are accumulated by the blocks with
// blockIdx.x == 0 when the Op asks for them: the threads t < BM each add
// As[k][t] in k order, alongside the product.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/launch.cuh"

namespace scratchnet::kernels::cudadetail {

constexpr int kIgemmBK = 8;

// n / d for 0 <= n < 2^31 and a divisor d >= 1 fixed at launch, without a
// division (the loaders' im2col decoding would otherwise spend ~20
// instructions per integer division, several per staged element): with
// l = ceil(log2 d) and mul = floor(2^32 (2^l - d) / d) + 1,
// n / d = (umulhi(n, mul) + n) >> l (no overflow for n < 2^31; d = 1 and
// powers of two need no special case). Checked on the host against / for
// every d < 6000 and sampled d up to 70000, n from 0 to 2^31 - 1; every
// conv test exercises it.
struct FastDiv {
  unsigned mul, shr;

  static FastDiv make(int d) {
    unsigned l = 0;
    while ((uint64_t{1} << l) < static_cast<uint64_t>(d)) ++l;
    const uint64_t m = (uint64_t{1} << 32) * ((uint64_t{1} << l) - d) / d + 1;
    return {static_cast<unsigned>(m), l};
  }
  __device__ __forceinline__ int div(int n) const {
    const unsigned u = static_cast<unsigned>(n);
    return static_cast<int>((__umulhi(u, mul) + u) >> shr);
  }
};

template <int BM, int BN>
struct IgemmTile {
  static constexpr int kThreads = BM * BN / 64;
  static constexpr int kEA = BM * kIgemmBK / kThreads;  // A values per thread per k-step
  static constexpr int kEB = BN * kIgemmBK / kThreads;  // B values per thread per k-step
  // Blocks per SM the compiler must allow: 2 x 256 or 4 x 128 threads, so at
  // most 128 registers and 25% occupancy, the usual price of an 8 x 8
  // register tile (64 independent FMAs per thread per k hide the latency).
  // 64 x 64 tiles stage 8 values of both A and B per thread per k-step and
  // spill at 128 registers: 6 x 64 threads (up to 168 registers, 19%).
  // tools/kernel_report.sh: 122-128 registers, 149-155 for 64 x 64, no spills.
  static constexpr int kMinBlocks = kThreads == 64 ? 6 : 512 / kThreads;
  static_assert(BM % 64 == 0 && BN % 64 == 0, "tiles are multiples of 64");
};

// One BM x BN tile of C; k-range [blockIdx.z * slice, min(Kred, +slice)).
template <int BM, int BN, class Op>
__device__ __forceinline__ void igemm_tile(const Op& op, int M, int Ncols, int Kred, int slice) {
  using T = IgemmTile<BM, BN>;
  constexpr int BK = kIgemmBK, NT = T::kThreads, EA = T::kEA, EB = T::kEB;
  __shared__ __align__(16) float As[2][BK][BM + 4];
  __shared__ __align__(16) float Bs[2][BK][BN + 4];

  const int t = threadIdx.x;
  const int warp = t >> 5, lane = t & 31;
  constexpr int kWarpsX = BN / 64;  // warps side by side along n (each 8 tx)
  const int ty = (warp / kWarpsX) * 4 + (lane >> 3), tx = (warp % kWarpsX) * 8 + (lane & 7);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kbeg = blockIdx.z * slice, kend = min(Kred, kbeg + slice);
  const int ksteps = (kend - kbeg + BK - 1) / BK;

  const int a_k = t % BK, a_m = t / BK;  // A: rows a_m + i * (NT / BK)
  const int b_n = t % BN, b_k = t / BN;  // B: k-offsets b_k + i * (NT / BN)
  const auto bcol = op.b_col(n0 + b_n, Ncols);

  const bool row_sums = op.wants_row_sums() && blockIdx.x == 0;
  float row_sum = 0.0f;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

#define SN_IGEMM_FETCH(k0)                                 \
  do {                                                     \
    const auto arow = op.a_row((k0) + a_k, kend);          \
    _Pragma("unroll") for (int i = 0; i < EA; ++i) ra[i] = \
        op.a_at(arow, m0 + a_m + i * (NT / BK), M);        \
    _Pragma("unroll") for (int i = 0; i < EB; ++i) rb[i] = \
        op.b_at(bcol, (k0) + b_k + i * (NT / BN), kend);   \
  } while (0)
#define SN_IGEMM_STASH(buf)                                                                   \
  do {                                                                                        \
    _Pragma("unroll") for (int i = 0; i < EA; ++i) As[buf][a_k][a_m + i * (NT / BK)] = ra[i]; \
    _Pragma("unroll") for (int i = 0; i < EB; ++i) Bs[buf][b_k + i * (NT / BN)][b_n] = rb[i]; \
  } while (0)

  // SN_IGEMM_FETCH(k0): the k-step at k0 into registers ra, rb;
  // SN_IGEMM_STASH(buf): the registers into As/Bs[buf].
  float ra[EA], rb[EB];
  if (ksteps > 0) {
    SN_IGEMM_FETCH(kbeg);
    SN_IGEMM_STASH(0);
  }
  __syncthreads();

  for (int kt = 0; kt < ksteps; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < ksteps;
    if (more) SN_IGEMM_FETCH(kbeg + (kt + 1) * BK);
    if (row_sums && t < BM) {
#pragma unroll
      for (int k = 0; k < BK; ++k) row_sum += As[cur][k][t];
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][BM / 2 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][BN / 2 + tx * 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) SN_IGEMM_STASH(cur ^ 1);
    __syncthreads();
  }

#undef SN_IGEMM_FETCH
#undef SN_IGEMM_STASH
  if (row_sums && t < BM && m0 + t < M) op.store_row_sum(m0 + t, row_sum);

#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int n = n0 + (j < 4 ? tx * 4 + j : BN / 2 + tx * 4 + (j - 4));
    if (n >= Ncols) continue;
    const auto ocol = op.out_col(n);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int m = m0 + (i < 4 ? ty * 4 + i : BM / 2 + ty * 4 + (i - 4));
      if (m < M) op.store(ocol, m, acc[i][j]);
    }
  }
}

}  // namespace scratchnet::kernels::cudadetail
