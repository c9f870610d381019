// 2-D convolution on the GPU as implicit GEMMs, NCHW, weights (K, C, R, S),
// strict FP32 (fmaf on CUDA cores, no TF32), deterministic (no atomics).
//
// No column matrix is ever written: the tile loader of conv2d_igemm.cuh
// computes, for each element of the GEMM operand it stages in shared memory,
// the address in x / dy / w that im2col would have copied there (or a zero:
// padding, an edge, a stride tap). The batch is folded into the GEMM's
// column dimension, so a 7x7 layer at batch 256 is one GEMM of 12544 columns,
// not 256 GEMMs of 49.
//   forward:         y (K, N*P*Q) = W (K, C*R*S) col(x) (C*R*S, N*P*Q);
//                    epilogue: + bias, then ReLU when asked (relu = true),
//                    written once to y (N, K, P, Q).
//   backward data:   dx (C, N*H*W) += Wt (C, K*R*S) taps(dy) (K*R*S, N*H*W),
//                    Wt[c][(k, r, s)] = w[k, c, r, s] (read in place),
//                    where taps(dy)[(k, r, s)][(n, h, w)] is dy[n, k, oh, ow]
//                    for the output pixel whose window tap (r, s) reads
//                    (h, w), zero when none does; each dx element is summed
//                    by one thread, then added to dx (the gradient
//                    accumulates, +=). Stride-s layers spend (s² - 1)/s² of
//                    these taps on zeros (correct, not yet fast).
//   backward weight: dW (K, C*R*S) += dy (K, N*P*Q) col(x)ᵀ (N*P*Q, C*R*S);
//                    the bias gradient db[k] = Σ dy[k, :] is the row sum of
//                    the A operand, accumulated in the same pass by the blocks
//                    of the first column tile. When the K x CRS tiles alone
//                    would leave the GPU idle, the reduction N*P*Q is split
//                    (split-K, grid.z) into slices of one length (a multiple
//                    of 8; the last may be shorter) writing partial products
//                    to the workspace;
//                    sum_partials_kernel then adds them to dW and db in slice
//                    order. Every sum has one fixed order: same bits each run.
// Tile shapes (BM x BN, BM along the channel dimension M, BN along the
// columns; all with BK = 8 and an 8 x 8 micro-tile per thread):
//   BM = 64 when M <= 64 (K forward and weight gradient, C data gradient),
//   else 128: a 64-channel layer no longer wastes half of a 128-row tile.
//   forward / data gradient: BN = 128, or 64 when 128-wide tiles would give
//   fewer than kTargetBlocks blocks (small late layers at small batches).
//   weight gradient: BN = 64 when C*R*S <= 64, else 128; split-K fills the GPU.
// The tile shape never changes the bits of y or dx (each element is one
// thread's sum over the reduction in ascending order); the weight gradient's
// split count (which depends on the tile) does, but is a fixed function of
// the shape.
// Workspace: only the split-K partial products (0 bytes when no split).
// Integer decoding of the im2col indices uses launch-time magic divisors
// (FastDiv, conv2d_igemm.cuh). Occupancy (tools/kernel_report.sh, sm_90):
// 25% for 256- and 128-thread tiles (<= 128 registers), 19% for 64 x 64;
// the 8 x 8 register tile trades occupancy for 64 independent FMAs per k.
// The im2col + GEMM kernels this replaces live in git history (main before
// this change); the CPU reference is the tests' oracle.
#include <algorithm>
#include <atomic>

#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_igemm.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/split_k.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

// kTargetBlocks (kernels/cuda/split_k.h) also steers the tile choice: a
// constant, not the device's SM count, so tile and split choices (and so the
// bits of dW) are the same on every GPU.

// Tests only: force one tile shape (BM * 1000 + BN; 0: the rule).
std::atomic<int> forced_tile{0};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

Conv2dTile tile_for(int64_t M, int64_t ncols, bool wgrad) {
  if (const int f = forced_tile.load(); f > 0) return {f / 1000, f % 1000};
  Conv2dTile t{M <= 64 ? 64 : 128, 128};
  if (wgrad)
    t.bn = ncols <= 64 ? 64 : 128;
  else if (ceil_div(M, t.bm) * ceil_div(ncols, 128) < kTargetBlocks)
    t.bn = 64;
  return t;
}

// The int32 index arithmetic of the kernels: per-image tensors, GEMM
// dimensions and weights below 2^31 elements.
void check_sizes(const Conv2dParams& p) {
  const int64_t lim = (1LL << 31) - 1, crs = int64_t(p.C) * p.R * p.S;
  const int64_t pq = int64_t(p.P) * p.Q, hw = int64_t(p.H) * p.W;
  require(int64_t(p.C) * hw <= lim && int64_t(p.K) * pq <= lim && p.N * pq <= lim &&
              p.N * hw <= lim && crs * p.K <= lim && int64_t(p.K) * p.R * p.S <= lim,
          "conv2d", "a CUDA conv2d dimension exceeds 2^31 elements");
}

// Split-K plan of the weight gradient (the rule of kernels/cuda/split_k.h).
SplitK wgrad_split(const Conv2dParams& p, Conv2dTile t) {
  const int64_t len = int64_t(p.N) * p.P * p.Q, crs = int64_t(p.C) * p.R * p.S;
  const int64_t tiles = ceil_div(p.K, t.bm) * ceil_div(crs, t.bn);
  return split_k_plan(tiles, len, crs * p.K + p.K /* dW and db partials */, kIgemmBK);
}

// Element (m, kr) of A and (kr, n) of B for each pass, and its epilogue; see
// conv2d_igemm.cuh for the contract. Decoding happens once per row of A per
// k-step and once per column of B per block where the mapping allows.
struct ForwardOp {
  Conv2dParams p;
  const float* x;  // (N, C, H, W)
  const float* w;  // (K, C*R*S)
  const float* b;  // (K) or null
  float* y;        // (N, K, P, Q)
  bool relu;
  int CRS, RS, PQ;
  int64_t CHW, KPQ;
  FastDiv by_rs, by_s, by_pq, by_q;

  struct Row {
    int kr;
    bool ok;
  };
  __device__ Row a_row(int kr, int kend) const { return {kr, kr < kend}; }
  __device__ float a_at(const Row& a, int m, int M) const {
    return a.ok && m < M ? __ldg(w + static_cast<int64_t>(m) * CRS + a.kr) : 0.0f;
  }
  struct Col {
    const float* xn;
    int h0, w0;
    bool ok;
  };
  __device__ Col b_col(int j, int ncols) const {
    Col c{x, 0, 0, j < ncols};
    if (c.ok) {
      const int n = by_pq.div(j), pq = j - n * PQ, oh = by_q.div(pq), ow = pq - oh * p.Q;
      c.xn = x + n * CHW;
      c.h0 = oh * p.stride - p.pad;
      c.w0 = ow * p.stride - p.pad;
    }
    return c;
  }
  __device__ float b_at(const Col& c, int kr, int kend) const {
    if (!c.ok || kr >= kend) return 0.0f;
    const int ci = by_rs.div(kr), rs = kr - ci * RS, r = by_s.div(rs), s = rs - r * p.S;
    const int h = c.h0 + r, wi = c.w0 + s;
    if (static_cast<unsigned>(h) >= static_cast<unsigned>(p.H) ||
        static_cast<unsigned>(wi) >= static_cast<unsigned>(p.W))
      return 0.0f;
    return __ldg(c.xn + (ci * p.H + h) * p.W + wi);
  }
  __device__ float* out_col(int j) const {
    const int n = by_pq.div(j);
    return y + n * KPQ + (j - n * PQ);
  }
  __device__ void store(float* out, int m, float v) const {
    if (b != nullptr) v += __ldg(b + m);
    if (relu) v = v > 0.0f ? v : 0.0f;  // as relu_forward_cuda: a fused pass gives the same bits
    out[static_cast<int64_t>(m) * PQ] = v;
  }
  __device__ bool wants_row_sums() const { return false; }
  __device__ void store_row_sum(int, float) const {}
};

struct BackwardDataOp {
  Conv2dParams p;
  const float* dy;  // (N, K, P, Q)
  const float* w;   // (K, C, R, S)
  float* dx;        // (N, C, H, W), accumulated into, or written when write
  bool write;
  int RS, CRS, HW;
  int64_t CHW, KPQ;
  FastDiv by_rs, by_s, by_hw, by_w, by_stride;

  struct Row {
    int64_t base;  // k*C*R*S + (r, s)
    bool ok;
  };
  __device__ Row a_row(int kr, int kend) const {
    const int k = by_rs.div(kr);
    return {static_cast<int64_t>(k) * CRS + (kr - k * RS), kr < kend};
  }
  __device__ float a_at(const Row& a, int m, int M) const {
    return a.ok && m < M ? __ldg(w + a.base + m * RS) : 0.0f;
  }
  struct Col {
    const float* dyn;
    int hp, wp;  // h + pad, w + pad
    bool ok;
  };
  __device__ Col b_col(int j, int ncols) const {
    Col c{dy, 0, 0, j < ncols};
    if (c.ok) {
      const int n = by_hw.div(j), hw = j - n * HW, h = by_w.div(hw);
      c.dyn = dy + n * KPQ;
      c.hp = h + p.pad;
      c.wp = hw - h * p.W + p.pad;
    }
    return c;
  }
  __device__ float b_at(const Col& c, int kr, int kend) const {
    if (!c.ok || kr >= kend) return 0.0f;
    const int k = by_rs.div(kr), rs = kr - k * RS, r = by_s.div(rs), s = rs - r * p.S;
    const int th = c.hp - r, tw = c.wp - s;
    if (th < 0 || tw < 0) return 0.0f;
    const int oh = by_stride.div(th), ow = by_stride.div(tw);
    if (oh * p.stride != th || ow * p.stride != tw || oh >= p.P || ow >= p.Q) return 0.0f;
    return __ldg(c.dyn + (k * p.P + oh) * p.Q + ow);
  }
  __device__ float* out_col(int j) const {
    const int n = by_hw.div(j);
    return dx + n * CHW + (j - n * HW);
  }
  __device__ void store(float* out, int m, float v) const {
    float& o = out[static_cast<int64_t>(m) * HW];
    o = write ? v : o + v;
  }
  __device__ bool wants_row_sums() const { return false; }
  __device__ void store_row_sum(int, float) const {}
};

struct BackwardWeightOp {
  Conv2dParams p;
  const float* x;   // (N, C, H, W)
  const float* dy;  // (N, K, P, Q)
  float* dw;        // (K, C*R*S), accumulated into (no split)
  float* db;        // (K) or null, accumulated into (no split)
  float* partial;   // split: (split, K, C*R*S) then (split, K); null: no split
  int RS, CRS, PQ, HW;
  int64_t CHW, KPQ, KCRS;
  FastDiv by_pq, by_q;

  struct Row {
    const float* dyp;  // dy[n, 0, pq]
    bool ok;
  };
  __device__ Row a_row(int j, int kend) const {
    const int n = by_pq.div(j);
    return {dy + n * KPQ + (j - n * PQ), j < kend};
  }
  __device__ float a_at(const Row& a, int m, int M) const {
    return a.ok && m < M ? __ldg(a.dyp + static_cast<int64_t>(m) * PQ) : 0.0f;
  }
  struct Col {
    const float* xc;  // x[0, c]
    int r, s;
    bool ok;
  };
  __device__ Col b_col(int crs, int ncols) const {
    Col c{x, 0, 0, crs < ncols};
    if (c.ok) {
      const int ci = crs / RS, rs = crs - ci * RS;
      c.xc = x + static_cast<int64_t>(ci) * HW;
      c.r = rs / p.S;
      c.s = rs - c.r * p.S;
    }
    return c;
  }
  __device__ float b_at(const Col& c, int j, int kend) const {
    if (!c.ok || j >= kend) return 0.0f;
    const int n = by_pq.div(j), pq = j - n * PQ, oh = by_q.div(pq), ow = pq - oh * p.Q;
    const int h = oh * p.stride - p.pad + c.r, wi = ow * p.stride - p.pad + c.s;
    if (static_cast<unsigned>(h) >= static_cast<unsigned>(p.H) ||
        static_cast<unsigned>(wi) >= static_cast<unsigned>(p.W))
      return 0.0f;
    return __ldg(c.xc + n * CHW + h * p.W + wi);
  }
  __device__ int out_col(int crs) const { return crs; }
  __device__ void store(int crs, int m, float v) const {
    const int64_t i = static_cast<int64_t>(m) * CRS + crs;
    if (partial != nullptr)
      partial[blockIdx.z * KCRS + i] = v;
    else
      dw[i] += v;
  }
  __device__ bool wants_row_sums() const { return db != nullptr; }
  __device__ void store_row_sum(int m, float s) const {
    if (partial != nullptr)
      partial[gridDim.z * KCRS + blockIdx.z * int64_t(p.K) + m] = s;
    else
      db[m] += s;
  }
};

template <int BM, int BN, class Op>
__global__ void __launch_bounds__(IgemmTile<BM, BN>::kThreads, IgemmTile<BM, BN>::kMinBlocks)
    conv2d_igemm_kernel(Op op, int M, int ncols, int kred, int slice) {
  igemm_tile<BM, BN>(op, M, ncols, kred, slice);
}

template <int BM, int BN, class Op>
void launch_tile(const char* name, const Op& op, int M, int ncols, int kred, int split, int slice,
                 Stream stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(ncols, BN)),
                  static_cast<unsigned>(ceil_div(M, BM)), static_cast<unsigned>(split));
  SN_LAUNCH(name, conv2d_igemm_kernel<BM, BN, Op>, grid, IgemmTile<BM, BN>::kThreads, 0, stream, op,
            M, ncols, kred, slice);
}

template <class Op>
void launch_igemm(const char* name, Conv2dTile t, const Op& op, int M, int ncols, int kred,
                  int split, int slice, Stream stream) {
  require(ceil_div(M, t.bm) <= 65535 && split <= 65535, "conv2d", "too many channels for one grid");
  if (t.bm == 128 && t.bn == 128)
    launch_tile<128, 128>(name, op, M, ncols, kred, split, slice, stream);
  else if (t.bm == 128 && t.bn == 64)
    launch_tile<128, 64>(name, op, M, ncols, kred, split, slice, stream);
  else if (t.bm == 64 && t.bn == 128)
    launch_tile<64, 128>(name, op, M, ncols, kred, split, slice, stream);
  else if (t.bm == 64 && t.bn == 64)
    launch_tile<64, 64>(name, op, M, ncols, kred, split, slice, stream);
  else
    require(false, "conv2d", "no such CUDA tile shape");
}

// dw[i] += Σ_s partial[s][i] (i < K*CRS), db[k] += Σ_s partial_b[s][k]; s ascending.
__global__ void sum_partials_kernel(int64_t kcrs, int K, int split,
                                    const float* __restrict__ partial, float* __restrict__ dw,
                                    float* __restrict__ db) {
  const int64_t n = kcrs + (db != nullptr ? K : 0);
  for (int64_t i = global_tid(); i < n; i += grid_stride()) {
    float s = 0.0f;
    if (i < kcrs) {
      for (int j = 0; j < split; ++j) s += partial[j * kcrs + i];
      dw[i] += s;
    } else {
      const float* pb = partial + split * kcrs + (i - kcrs);
      for (int j = 0; j < split; ++j) s += pb[int64_t(j) * K];
      db[i - kcrs] += s;
    }
  }
}

}  // namespace

void conv2d_cuda_force_tile_for_testing(int bm, int bn) {
  forced_tile.store(bm > 0 && bn > 0 ? bm * 1000 + bn : 0);
}

Conv2dCudaPlan conv2d_cuda_plan(const Conv2dParams& p) {
  const int64_t crs = int64_t(p.C) * p.R * p.S;
  Conv2dCudaPlan pl{};
  pl.forward = tile_for(p.K, int64_t(p.N) * p.P * p.Q, false);
  pl.backward_data = tile_for(p.C, int64_t(p.N) * p.H * p.W, false);
  pl.backward_weight = tile_for(p.K, crs, true);
  const SplitK s = wgrad_split(p, pl.backward_weight);
  pl.weight_split = s.split;
  pl.workspace_bytes = s.split > 1 ? std::size_t(s.split) * std::size_t(crs * p.K + p.K) * 4 : 0;
  return pl;
}

std::size_t conv2d_workspace_bytes_cuda(const Conv2dParams& p) {
  return conv2d_cuda_plan(p).workspace_bytes;
}

void conv2d_forward_cuda(const Conv2dParams& p, const float* x, const float* w, const float* b,
                         float* y, void* /*workspace*/, Stream stream, bool relu) {
  check_sizes(p);
  const int crs = p.C * p.R * p.S, pq = p.P * p.Q;
  const ForwardOp op{p,
                     x,
                     w,
                     b,
                     y,
                     relu,
                     crs,
                     p.R * p.S,
                     pq,
                     int64_t(p.C) * p.H * p.W,
                     int64_t(p.K) * pq,
                     FastDiv::make(p.R * p.S),
                     FastDiv::make(p.S),
                     FastDiv::make(pq),
                     FastDiv::make(p.Q)};
  const int ncols = p.N * pq;
  launch_igemm("conv2d_forward_igemm", tile_for(p.K, ncols, false), op, p.K, ncols, crs, 1, crs,
               stream);
}

void conv2d_backward_data_cuda(const Conv2dParams& p, const float* dy, const float* w, float* dx,
                               void* /*workspace*/, Stream stream, bool write_dx) {
  check_sizes(p);
  const int hw = p.H * p.W, krs = p.K * p.R * p.S;
  const BackwardDataOp op{p,
                          dy,
                          w,
                          dx,
                          write_dx,
                          p.R * p.S,
                          p.C * p.R * p.S,
                          hw,
                          int64_t(p.C) * hw,
                          int64_t(p.K) * p.P * p.Q,
                          FastDiv::make(p.R * p.S),
                          FastDiv::make(p.S),
                          FastDiv::make(hw),
                          FastDiv::make(p.W),
                          FastDiv::make(p.stride)};
  const int ncols = p.N * hw;
  launch_igemm("conv2d_backward_data_igemm", tile_for(p.C, ncols, false), op, p.C, ncols, krs, 1,
               krs, stream);
}

void conv2d_backward_weight_cuda(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                 float* db, void* workspace, Stream stream) {
  check_sizes(p);
  const int crs = p.C * p.R * p.S, pq = p.P * p.Q, hw = p.H * p.W;
  const Conv2dTile t = tile_for(p.K, crs, true);
  const SplitK s = wgrad_split(p, t);
  float* partial = s.split > 1 ? static_cast<float*>(workspace) : nullptr;
  require(s.split == 1 || workspace != nullptr, "conv2d",
          "the CUDA weight gradient needs conv2d_workspace_bytes_cuda() of workspace");
  const BackwardWeightOp op{p,
                            x,
                            dy,
                            dw,
                            db,
                            partial,
                            p.R * p.S,
                            crs,
                            pq,
                            hw,
                            int64_t(p.C) * hw,
                            int64_t(p.K) * pq,
                            int64_t(p.K) * crs,
                            FastDiv::make(pq),
                            FastDiv::make(p.Q)};
  launch_igemm("conv2d_backward_weight_igemm", t, op, p.K, crs, p.N * pq, s.split, s.slice, stream);
  if (s.split > 1) {
    const int64_t kcrs = int64_t(p.K) * crs;
    SN_LAUNCH("sum_partials_kernel", sum_partials_kernel, grid_for(kcrs + p.K), kThreads, 0, stream,
              kcrs, p.K, s.split, partial, dw, db);
  }
}

}  // namespace scratchnet::kernels
