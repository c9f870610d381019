// Hand-written SGEMM, row-major: C = alpha * op(A) op(B) + beta * C in strict
// FP32 (CUDA-core FMAs, no TF32), for all four transpose combinations, any
// M/N/K and leading dimensions, optionally strided-batched.
//
// Layout of the work:
//   block tile 128 (M) x 128 (N) x 8 (K), 256 threads, each thread an 8 x 8
//   micro-tile of C held in registers: rows ty*4+{0..3} and 64+ty*4+{0..3},
//   columns tx*4+{0..3} and 64+tx*4+{0..3} (ty, tx in 0..15; a warp is a
//   4 x 8 patch of (ty, tx)), so every shared-memory read is a float4 and
//   costs one wavefront per warp.
//   Shared memory holds As[k][m] and Bs[k][n] (both "k-major", row pitch 132
//   floats: the padding spreads the transposing stores over the banks),
//   double-buffered: the next tile is fetched from global memory into
//   registers while the current one is multiplied, one __syncthreads per
//   k-step.
//   Global loads are float4 where the matrix pointer and leading dimension
//   allow it and the 4 elements are in range; otherwise guarded scalars
//   (edges, odd leading dimensions). Same for the float4 stores of C.
//   beta == 0 never reads C (it may hold garbage or NaN, as in BLAS).
//   One tile per block; consecutive blocks walk groups of 8 tile-rows for L2
//   reuse. The batch index is blockIdx.y (chunks of 65535 launched from the host).
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/launch.cuh"

namespace scratchnet::kernels {

namespace cudadetail {

namespace {

constexpr int BM = 128, BN = 128, BK = 8, LDS = BM + 4, THREADS = 256, GROUP_M = 8;

// Loads 4 consecutive elements of row `row` (columns col..col+3) of a matrix
// with leading dimension ld; out-of-range elements read as 0.
__device__ __forceinline__ void load4(const float* __restrict__ X, int ld, int row, int rows,
                                      int col, int cols, bool vec, float (&v)[4]) {
  if (row < rows) {
    const float* ptr = X + static_cast<int64_t>(row) * ld + col;
    if (vec && col + 3 < cols) {
      const float4 f = __ldg(reinterpret_cast<const float4*>(ptr));
      v[0] = f.x;
      v[1] = f.y;
      v[2] = f.z;
      v[3] = f.w;
      return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = (col + j < cols) ? __ldg(ptr + j) : 0.0f;
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = 0.0f;
}

// Fetches the 4 values this thread contributes to a 128 x 8 tile of op(X):
// X is "k-contiguous" (A not transposed, B transposed: X[mn * ld + k]) or
// "mn-contiguous" (A transposed, B not: X[k * ld + mn]).
template <bool KContig>
__device__ __forceinline__ void fetch_tile(const float* __restrict__ X, int ld, int MN, int K,
                                           int mn0, int k0, bool vec, float (&v)[4]) {
  const int t = threadIdx.x;
  if (KContig)
    load4(X, ld, mn0 + (t >> 1), MN, k0 + (t & 1) * 4, K, vec, v);
  else
    load4(X, ld, k0 + (t >> 5), K, mn0 + (t & 31) * 4, MN, vec, v);
}

template <bool KContig>
__device__ __forceinline__ void store_tile(float (*S)[LDS], const float (&v)[4]) {
  const int t = threadIdx.x;
  if (KContig) {
    const int mn = t >> 1, k = (t & 1) * 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) S[k + j][mn] = v[j];
  } else {
    *reinterpret_cast<float4*>(&S[t >> 5][(t & 31) * 4]) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

__device__ __forceinline__ void store_c(float* __restrict__ C, int ldc, int M, int N, int m, int n,
                                        const float* acc, float alpha, float beta, bool vec) {
  if (m >= M) return;
  float* ptr = C + static_cast<int64_t>(m) * ldc + n;
  if (vec && n + 3 < N) {
    float4 out = make_float4(alpha * acc[0], alpha * acc[1], alpha * acc[2], alpha * acc[3]);
    if (beta != 0.0f) {
      const float4 old = *reinterpret_cast<const float4*>(ptr);
      out.x += beta * old.x;
      out.y += beta * old.y;
      out.z += beta * old.z;
      out.w += beta * old.w;
    }
    *reinterpret_cast<float4*>(ptr) = out;
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (n + j < N) {
      float out = alpha * acc[j];
      if (beta != 0.0f) out += beta * ptr[j];
      ptr[j] = out;
    }
  }
}

template <bool TA, bool TB>
__global__ void __launch_bounds__(THREADS, 2)
    sgemm_kernel_v1(int M, int N, int K, const float* __restrict__ A, int lda, int64_t stride_a,
                    const float* __restrict__ B, int ldb, int64_t stride_b, float* __restrict__ C,
                    int ldc, int64_t stride_c, float alpha, float beta, bool vec_a, bool vec_b,
                    bool vec_c, int batch0) {
  __shared__ __align__(16) float As[2][BK][LDS];
  __shared__ __align__(16) float Bs[2][BK][LDS];
  const int64_t b = static_cast<int64_t>(batch0) + blockIdx.y;
  A += b * stride_a;
  B += b * stride_b;
  C += b * stride_c;

  // A warp covers a 4 (ty) x 8 (tx) patch of threads, so its float4 reads of
  // As/Bs touch 4 and 8 distinct addresses: one shared-memory wavefront each.
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int ty = (warp >> 1) * 4 + (lane >> 3), tx = (warp & 1) * 8 + (lane & 7);
  // One 128 x 128 tile per block (the host checks the tile count fits the grid).
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int ktiles = (K + BK - 1) / BK;
  const int tile = blockIdx.x;
  const int group_tiles = GROUP_M * tiles_n;
  const int group = tile / group_tiles;
  const int first_m = group * GROUP_M;
  const int gm = min(tiles_m - first_m, GROUP_M);
  const int in_group = tile - group * group_tiles;
  const int m0 = (first_m + in_group % gm) * BM;
  const int n0 = (in_group / gm) * BN;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  float ra[4], rb[4];
  if (ktiles > 0) {
    fetch_tile<!TA>(A, lda, M, K, m0, 0, vec_a, ra);
    fetch_tile<TB>(B, ldb, N, K, n0, 0, vec_b, rb);
    store_tile<!TA>(As[0], ra);
    store_tile<TB>(Bs[0], rb);
  }
  __syncthreads();

  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < ktiles;
    if (more) {
      fetch_tile<!TA>(A, lda, M, K, m0, (kt + 1) * BK, vec_a, ra);
      fetch_tile<TB>(B, ldb, N, K, n0, (kt + 1) * BK, vec_b, rb);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[8], bb[8];
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][64 + tx * 4]);
      a[0] = a0.x;
      a[1] = a0.y;
      a[2] = a0.z;
      a[3] = a0.w;
      a[4] = a1.x;
      a[5] = a1.y;
      a[6] = a1.z;
      a[7] = a1.w;
      bb[0] = b0.x;
      bb[1] = b0.y;
      bb[2] = b0.z;
      bb[3] = b0.w;
      bb[4] = b1.x;
      bb[5] = b1.y;
      bb[6] = b1.z;
      bb[7] = b1.w;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], bb[j], acc[i][j]);
    }
    if (more) {
      store_tile<!TA>(As[cur ^ 1], ra);
      store_tile<TB>(Bs[cur ^ 1], rb);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    store_c(C, ldc, M, N, m, n0 + tx * 4, &acc[i][0], alpha, beta, vec_c);
    store_c(C, ldc, M, N, m, n0 + 64 + tx * 4, &acc[i][4], alpha, beta, vec_c);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

void check_gemm_params(const GemmParams& p) {
  auto s = [](long long v) { return std::to_string(v); };
  require(p.M >= 0 && p.N >= 0 && p.K >= 0, "gemm",
          "sizes must be >= 0, got M=" + s(p.M) + " N=" + s(p.N) + " K=" + s(p.K));
  const int a_cols = p.trans_a ? p.M : p.K, b_cols = p.trans_b ? p.K : p.N;
  require(p.lda >= a_cols, "gemm",
          "lda " + s(p.lda) + " is smaller than the row length " + s(a_cols) + " of A");
  require(p.ldb >= b_cols, "gemm",
          "ldb " + s(p.ldb) + " is smaller than the row length " + s(b_cols) + " of B");
  require(p.ldc >= p.N, "gemm",
          "ldc " + s(p.ldc) + " is smaller than the row length " + s(p.N) + " of C");
}

void gemm_batched_own(const GemmParams& p, const float* A, int64_t stride_a, const float* B,
                      int64_t stride_b, float* C, int64_t stride_c, int batch, Stream stream) {
  check_gemm_params(p);
  if (p.M == 0 || p.N == 0 || batch <= 0) return;
  const bool vec_a = aligned16(A) && p.lda % 4 == 0 && stride_a % 4 == 0;
  const bool vec_b = aligned16(B) && p.ldb % 4 == 0 && stride_b % 4 == 0;
  const bool vec_c = aligned16(C) && p.ldc % 4 == 0 && stride_c % 4 == 0;
  const int64_t tiles = static_cast<int64_t>((p.M + BM - 1) / BM) * ((p.N + BN - 1) / BN);
  require(tiles <= 0x7fffffffLL &&
              static_cast<int64_t>(GROUP_M) * ((p.N + BN - 1) / BN) <= 0x7fffffffLL,
          "gemm",
          "C of " + std::to_string(p.M) + " x " + std::to_string(p.N) +
              " has too many 128 x 128 tiles for one launch");
  const unsigned gx = static_cast<unsigned>(tiles);
  auto* kernel = p.trans_a
                     ? (p.trans_b ? sgemm_kernel_v1<true, true> : sgemm_kernel_v1<true, false>)
                     : (p.trans_b ? sgemm_kernel_v1<false, true> : sgemm_kernel_v1<false, false>);
  for (int b0 = 0; b0 < batch; b0 += 65535) {
    const unsigned gy = static_cast<unsigned>(std::min(batch - b0, 65535));
    SN_LAUNCH("sgemm_kernel_v1", kernel, dim3(gx, gy), THREADS, 0, stream, p.M, p.N, p.K, A, p.lda,
              stride_a, B, p.ldb, stride_b, C, p.ldc, stride_c, p.alpha, p.beta, vec_a, vec_b,
              vec_c, b0);
  }
}

}  // namespace cudadetail

void gemm_cuda(const GemmParams& p, const float* A, const float* B, float* C, Stream stream) {
  cudadetail::gemm_batched_own(p, A, 0, B, 0, C, 0, 1, stream);
}

bool gemm_use_cublas() {
  static const bool on = [] {
    const char* v = std::getenv("SCRATCHNET_GEMM");
    return v != nullptr && std::strcmp(v, "cublas") == 0;
  }();
  return on;
}

}  // namespace scratchnet::kernels
