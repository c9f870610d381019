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
// Epilogue (gemm_cuda_ex; linear's forward): C = act(alpha op(A) op(B) +
//   beta C + bias[n]), bias per output column, act = ReLU or none, applied as
//   the tile is stored: linear forward is one kernel, no bias pass.
// Split-K (single GEMMs only, kernels/cuda/split_k.h's rule): when the output
//   tiles alone would leave the GPU idle and K is long, blockIdx.z takes one
//   slice of K and stores its raw partial sums to a workspace (split, M, N);
//   gemm_epilogue_kernel then adds the slices in ascending order and applies
//   alpha, beta, bias and ReLU. Deterministic, no atomics; the bits depend on
//   the split, which is a fixed function of M, N and K.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/split_k.h"

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

// The epilogue of one output value: act(alpha * acc + beta * old + bias[n]).
__device__ __forceinline__ float epilogue(float acc, float alpha, float beta, const float* ptr,
                                          const float* __restrict__ bias, int n, bool relu) {
  float out = alpha * acc;
  if (beta != 0.0f) out += beta * *ptr;
  if (bias != nullptr) out += __ldg(bias + n);
  return relu ? fmaxf(out, 0.0f) : out;
}

__device__ __forceinline__ void store_c(float* __restrict__ C, int ldc, int M, int N, int m, int n,
                                        const float* acc, float alpha, float beta,
                                        const float* __restrict__ bias, bool relu, bool vec) {
  if (m >= M) return;
  float* ptr = C + static_cast<int64_t>(m) * ldc + n;
  if (vec && n + 3 < N) {
    float4 out = beta != 0.0f ? *reinterpret_cast<const float4*>(ptr) : make_float4(0, 0, 0, 0);
    out.x = epilogue(acc[0], alpha, beta, &out.x, bias, n, relu);
    out.y = epilogue(acc[1], alpha, beta, &out.y, bias, n + 1, relu);
    out.z = epilogue(acc[2], alpha, beta, &out.z, bias, n + 2, relu);
    out.w = epilogue(acc[3], alpha, beta, &out.w, bias, n + 3, relu);
    *reinterpret_cast<float4*>(ptr) = out;
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (n + j < N) ptr[j] = epilogue(acc[j], alpha, beta, ptr + j, bias, n + j, relu);
}

template <bool TA, bool TB>
__global__ void __launch_bounds__(THREADS, 2)
    sgemm_kernel_v1(int M, int N, int K, const float* __restrict__ A, int lda, int64_t stride_a,
                    const float* __restrict__ B, int ldb, int64_t stride_b, float* __restrict__ C,
                    int ldc, int64_t stride_c, float alpha, float beta, bool vec_a, bool vec_b,
                    bool vec_c, int batch0, const float* __restrict__ bias, bool relu, int kslice) {
  __shared__ __align__(16) float As[2][BK][LDS];
  __shared__ __align__(16) float Bs[2][BK][LDS];
  const int64_t b = static_cast<int64_t>(batch0) + blockIdx.y;
  A += b * stride_a;
  B += b * stride_b;
  C += b * stride_c;
  // Split-K: this block sums k in [kbeg, kend) and stores to slice z of the
  // workspace (C, stride_c apart; the launcher sets alpha 1, beta 0, no bias).
  const int kbeg = static_cast<int>(blockIdx.z) * kslice, kend = min(K, kbeg + kslice);
  C += static_cast<int64_t>(blockIdx.z) * stride_c;

  // A warp covers a 4 (ty) x 8 (tx) patch of threads, so its float4 reads of
  // As/Bs touch 4 and 8 distinct addresses: one shared-memory wavefront each.
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int ty = (warp >> 1) * 4 + (lane >> 3), tx = (warp & 1) * 8 + (lane & 7);
  // One 128 x 128 tile per block (the host checks the tile count fits the grid).
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int ktiles = (kend - kbeg + BK - 1) / BK;
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
    fetch_tile<!TA>(A, lda, M, kend, m0, kbeg, vec_a, ra);
    fetch_tile<TB>(B, ldb, N, kend, n0, kbeg, vec_b, rb);
    store_tile<!TA>(As[0], ra);
    store_tile<TB>(Bs[0], rb);
  }
  __syncthreads();

  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < ktiles;
    if (more) {
      fetch_tile<!TA>(A, lda, M, kend, m0, kbeg + (kt + 1) * BK, vec_a, ra);
      fetch_tile<TB>(B, ldb, N, kend, n0, kbeg + (kt + 1) * BK, vec_b, rb);
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
    store_c(C, ldc, M, N, m, n0 + tx * 4, &acc[i][0], alpha, beta, bias, relu, vec_c);
    store_c(C, ldc, M, N, m, n0 + 64 + tx * 4, &acc[i][4], alpha, beta, bias, relu, vec_c);
  }
}

// C[m][n] = act(alpha * Σ_z part[z][m][n] + beta * C[m][n] + bias[n]), z
// ascending: the split-K reduction, or (split 1, part == C) the epilogue
// alone after a cuBLAS GEMM. part may alias C (element-wise, same index).
__global__ void gemm_epilogue_kernel(int M, int N, int split, const float* part,
                                     int64_t part_stride, int ldp, float alpha, float beta,
                                     float* C, int ldc, const float* __restrict__ bias, bool relu) {
  const int64_t total = static_cast<int64_t>(M) * N;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const int64_t m = i / N;
    const int n = static_cast<int>(i - m * N);
    const float* pp = part + m * ldp + n;
    float s = 0.0f;
    for (int z = 0; z < split; ++z) s += pp[z * part_stride];
    float* c = C + m * ldc + n;
    *c = epilogue(s, alpha, beta, c, bias, n, relu);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Tests only: force the split-K slice count of single GEMMs (0: the rule).
std::atomic<int> forced_split{0};

SplitK split_plan(const GemmParams& p) {
  if (gemm_use_cublas() || p.M == 0 || p.N == 0 || p.K == 0) return {1, p.K};
  const int64_t per_slice = static_cast<int64_t>(p.M) * p.N;
  if (const int f = forced_split.load(); f > 0) {
    const int64_t slice = ((p.K + f - 1) / f + BK - 1) / BK * BK;
    return {static_cast<int>((p.K + slice - 1) / slice), static_cast<int>(slice)};
  }
  const int64_t tiles = static_cast<int64_t>((p.M + BM - 1) / BM) * ((p.N + BN - 1) / BN);
  return split_k_plan(tiles, p.K, per_slice, BK);
}

// The tiled kernel over `batch` GEMMs (split 1) or over the `split` K-slices
// of one GEMM, C then being the (split, M, N) workspace.
void launch_sgemm(const GemmParams& p, const float* A, int64_t stride_a, const float* B,
                  int64_t stride_b, float* C, int ldc, int64_t stride_c, int batch,
                  const float* bias, bool relu, SplitK sk, float alpha, float beta, Stream stream) {
  const bool vec_a = aligned16(A) && p.lda % 4 == 0 && stride_a % 4 == 0;
  const bool vec_b = aligned16(B) && p.ldb % 4 == 0 && stride_b % 4 == 0;
  const bool vec_c = aligned16(C) && ldc % 4 == 0 && stride_c % 4 == 0;
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
    SN_LAUNCH("sgemm_kernel_v1", kernel, dim3(gx, gy, static_cast<unsigned>(sk.split)), THREADS, 0,
              stream, p.M, p.N, p.K, A, p.lda, stride_a, B, p.ldb, stride_b, C, ldc, stride_c,
              alpha, beta, vec_a, vec_b, vec_c, b0, bias, relu, sk.slice);
  }
}

}  // namespace

void check_gemm_params(const GemmParams& p) {
  auto s = [](long long v) { return std::to_string(v); };
  require(p.M >= 0 && p.N >= 0 && p.K >= 0, "gemm",
          "sizes must be >= 0, got M=" + s(p.M) + " N=" + s(p.N) + " K=" + s(p.K));
  require(p.b_source == nullptr, "gemm",
          "an on-demand B (GemmParams::b_source) is for the CPU GEMM only; pass B in device memory");
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
  launch_sgemm(p, A, stride_a, B, stride_b, C, p.ldc, stride_c, batch, nullptr, false, {1, p.K},
               p.alpha, p.beta, stream);
}

}  // namespace cudadetail

void gemm_cuda(const GemmParams& p, const float* A, const float* B, float* C, Stream stream) {
  cudadetail::gemm_batched_own(p, A, 0, B, 0, C, 0, 1, stream);
}

std::size_t gemm_cuda_workspace_bytes(const GemmParams& p) {
  const cudadetail::SplitK sk = cudadetail::split_plan(p);
  return sk.split > 1 ? static_cast<std::size_t>(sk.split) * p.M * p.N * sizeof(float) : 0;
}

void gemm_cuda_ex(const GemmParams& p, const float* A, const float* B, float* C, const float* bias,
                  bool relu, void* workspace, Stream stream) {
  using namespace cudadetail;
  check_gemm_params(p);
  if (p.M == 0 || p.N == 0) return;
  if (gemm_use_cublas()) {  // the baseline: cuBLAS, then the epilogue in place
    gemm_batched_cublas(p, A, 0, B, 0, C, 0, 1, stream, false);
    if (bias != nullptr || relu) {
      const int64_t total = static_cast<int64_t>(p.M) * p.N;
      SN_LAUNCH("gemm_epilogue_kernel", gemm_epilogue_kernel, grid_for(total), kThreads, 0, stream,
                p.M, p.N, 1, C, 0, p.ldc, 1.0f, 0.0f, C, p.ldc, bias, relu);
    }
    return;
  }
  const SplitK sk = split_plan(p);
  if (sk.split == 1) {
    launch_sgemm(p, A, 0, B, 0, C, p.ldc, 0, 1, bias, relu, sk, p.alpha, p.beta, stream);
    return;
  }
  require(workspace != nullptr, "gemm",
          "a split-K GEMM needs gemm_cuda_workspace_bytes() of workspace");
  float* part = static_cast<float*>(workspace);
  const int64_t mn = static_cast<int64_t>(p.M) * p.N;
  launch_sgemm(p, A, 0, B, 0, part, p.N, mn, 1, nullptr, false, sk, 1.0f, 0.0f, stream);
  SN_LAUNCH("gemm_epilogue_kernel", gemm_epilogue_kernel, grid_for(mn), kThreads, 0, stream, p.M,
            p.N, sk.split, part, mn, p.N, p.alpha, p.beta, C, p.ldc, bias, relu);
}

void gemm_cuda_force_split_for_testing(int split) {
  cudadetail::forced_split.store(std::max(split, 0));
}

bool gemm_use_cublas() {
  static const bool on = [] {
    const char* v = std::getenv("SCRATCHNET_GEMM");
    return v != nullptr && std::strcmp(v, "cublas") == 0;
  }();
  return on;
}

}  // namespace scratchnet::kernels
