// 2-D convolution on the GPU: im2col into the workspace + the hand-written
// SGEMM (or cuBLAS with SCRATCHNET_GEMM=cublas), NCHW, weights (K, C, R, S).
//
// The batch is processed in chunks of nb images so the workspace stays about
// 256 MB whatever the batch (conv_plan; one image may exceed it on its own).
//   forward:         col_b (CRS, PQ) = im2col(x_b); y_b (K, PQ) = W (K, CRS) col_b,
//                    one strided-batched GEMM per chunk; then + bias.
//   backward data:   dcol_b (CRS, PQ) = Wᵀ dy_b; dx_b += col2im(dcol_b), where col2im
//                    gathers, per input pixel, the window taps that read it (no atomics).
//   backward weight: the chunk is laid out "wide": col (CRS, nb*PQ) and dyT (K, nb*PQ),
//                    so dW += dyT colᵀ is ONE GEMM with reduction length nb*PQ; for
//                    small layers it is split along the reduction (split-K) into
//                    partial products summed afterwards in a fixed order.
//                    Chunks accumulate into dW one after the other: deterministic.
//   bias gradient:   one block per output channel, fixed-order tree reduction.
// 1x1 / stride 1 / pad 0 convolutions skip im2col in forward and backward data
// (the image already is the column matrix).
#include <algorithm>
#include <atomic>

#include "kernels/conv2d.h"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/launch.cuh"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

constexpr int64_t kColBudgetFloats = (256LL << 20) / 4;   // im2col + dyT per chunk
constexpr int64_t kSplitBudgetFloats = (64LL << 20) / 4;  // split-K partial products
constexpr int kMaxSplit = 128;
// Blocks the split weight-gradient GEMM aims for: 2 per SM of a 132-SM
// H100/H200. A constant, not the device's SM count, so the summation order
// (and so the bits of dW) is the same on every GPU.
constexpr int kTargetBlocks = 264;

// Tests only: a cap on the images per chunk, so small shapes exercise the
// chunk loop (and its ragged last chunk) that only large ones reach otherwise.
std::atomic<int> cap_chunk_images{0};

struct ConvPlan {
  int nb;              // images per chunk
  int64_t crs, pq;     // C*R*S, P*Q
  int64_t col_floats;  // nb * crs * pq, rounded up to a multiple of 4 (float4 alignment)
  int64_t dyt_floats;  // nb * K * pq, rounded likewise
  int max_split;       // split-K slices the partial buffer has room for
  int64_t total_floats;
};

int64_t round4(int64_t v) {
  return (v + 3) / 4 * 4;
}

ConvPlan conv_plan(const Conv2dParams& p) {
  ConvPlan pl{};
  pl.crs = static_cast<int64_t>(p.C) * p.R * p.S;
  pl.pq = static_cast<int64_t>(p.P) * p.Q;
  const int64_t per_image = pl.crs * pl.pq + static_cast<int64_t>(p.K) * pl.pq;
  pl.nb =
      static_cast<int>(std::clamp<int64_t>(kColBudgetFloats / per_image, 1, std::min(p.N, 65535)));
  if (const int cap = cap_chunk_images.load(); cap > 0) pl.nb = std::min(pl.nb, cap);
  pl.col_floats = round4(pl.nb * pl.crs * pl.pq);
  pl.dyt_floats = round4(pl.nb * p.K * pl.pq);
  const int64_t dw_floats = round4(static_cast<int64_t>(p.K) * pl.crs);
  pl.max_split =
      static_cast<int>(std::clamp<int64_t>(kSplitBudgetFloats / dw_floats, 1, kMaxSplit));
  pl.total_floats =
      pl.col_floats + pl.dyt_floats + (pl.max_split > 1 ? pl.max_split * dw_floats : 0);
  return pl;
}

bool is_pointwise(const Conv2dParams& p) {
  return p.R == 1 && p.S == 1 && p.stride == 1 && p.pad == 0;
}

// Column matrix of images n0 .. n0+nb-1. Wide = false: col[b][crs][pq]
// (one (CRS, PQ) matrix per image); Wide = true: col[crs][b][pq] (one
// (CRS, nb*PQ) matrix). Threads walk the output in memory order.
template <bool Wide>
__global__ void im2col_kernel(Conv2dParams p, int n0, int nb, const float* __restrict__ x,
                              float* __restrict__ col) {
  const int64_t PQ = static_cast<int64_t>(p.P) * p.Q, RS = p.R * p.S;
  const int64_t CRS = p.C * RS;
  const int64_t total = nb * CRS * PQ;
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride()) {
    const int64_t pq = idx % PQ;
    int64_t b, crs;
    if (Wide) {
      b = (idx / PQ) % nb;
      crs = idx / (PQ * nb);
    } else {
      crs = (idx / PQ) % CRS;
      b = idx / (PQ * CRS);
    }
    const int c = static_cast<int>(crs / RS), rs = static_cast<int>(crs % RS);
    const int r = rs / p.S, s = rs % p.S;
    const int oh = static_cast<int>(pq / p.Q), ow = static_cast<int>(pq % p.Q);
    const int h = oh * p.stride - p.pad + r, w = ow * p.stride - p.pad + s;
    float v = 0.0f;
    if (h >= 0 && h < p.H && w >= 0 && w < p.W)
      v = x[((static_cast<int64_t>(n0 + b) * p.C + c) * p.H + h) * p.W + w];
    col[idx] = v;
  }
}

// dx[n0 + b] += col2im(dcol[b]): each input pixel sums the taps (r, s) whose
// output position (oh, ow) exists, in a fixed order.
__global__ void col2im_kernel(Conv2dParams p, int n0, int nb, const float* __restrict__ dcol,
                              float* __restrict__ dx) {
  const int64_t PQ = static_cast<int64_t>(p.P) * p.Q, HW = static_cast<int64_t>(p.H) * p.W;
  const int64_t total = static_cast<int64_t>(nb) * p.C * HW;
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride()) {
    const int w = static_cast<int>(idx % p.W);
    const int h = static_cast<int>((idx / p.W) % p.H);
    const int64_t bc = idx / HW;  // b * C + c
    const int c = static_cast<int>(bc % p.C);
    const int64_t b = bc / p.C;
    const float* dcol_b = dcol + (b * p.C + c) * p.R * p.S * PQ;
    float sum = 0.0f;
    for (int r = 0; r < p.R; ++r) {
      const int th = h + p.pad - r;
      if (th < 0 || th % p.stride != 0) continue;
      const int oh = th / p.stride;
      if (oh >= p.P) continue;
      for (int s = 0; s < p.S; ++s) {
        const int tw = w + p.pad - s;
        if (tw < 0 || tw % p.stride != 0) continue;
        const int ow = tw / p.stride;
        if (ow >= p.Q) continue;
        sum += dcol_b[(static_cast<int64_t>(r) * p.S + s) * PQ + oh * p.Q + ow];
      }
    }
    dx[static_cast<int64_t>(n0) * p.C * HW + idx] += sum;
  }
}

// dyT[k][b][pq] = dy[n0 + b][k][pq]
__global__ void transpose_dy_kernel(Conv2dParams p, int n0, int nb, const float* __restrict__ dy,
                                    float* __restrict__ dyt) {
  const int64_t PQ = static_cast<int64_t>(p.P) * p.Q;
  const int64_t total = static_cast<int64_t>(nb) * p.K * PQ;
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride()) {
    const int64_t pq = idx % PQ;
    const int64_t b = (idx / PQ) % nb;
    const int64_t k = idx / (PQ * nb);
    dyt[idx] = dy[((n0 + b) * p.K + k) * PQ + pq];
  }
}

__global__ void add_bias_kernel(int64_t total, int64_t PQ, int K, const float* __restrict__ bias,
                                float* __restrict__ y) {
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride())
    y[idx] += bias[(idx / PQ) % K];
}

// dw[i] += Σ_s partial[s][i], s ascending.
__global__ void sum_partials_kernel(int64_t n, int splits, int64_t pitch,
                                    const float* __restrict__ partial, float* __restrict__ dw) {
  for (int64_t i = global_tid(); i < n; i += grid_stride()) {
    float s = 0.0f;
    for (int j = 0; j < splits; ++j) s += partial[j * pitch + i];
    dw[i] += s;
  }
}

// db[k] += Σ_n Σ_pq dy[n][k][pq]: block k, fixed-order tree.
__global__ void bias_grad_kernel(Conv2dParams p, const float* __restrict__ dy,
                                 float* __restrict__ db) {
  __shared__ float smem[kThreads];
  const int64_t PQ = static_cast<int64_t>(p.P) * p.Q;
  const int64_t total = static_cast<int64_t>(p.N) * PQ;
  for (int k = blockIdx.x; k < p.K; k += gridDim.x) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
      const int64_t n = i / PQ, pq = i % PQ;
      s += dy[(n * p.K + k) * PQ + pq];
    }
    s = block_reduce_sum(s, smem);
    if (threadIdx.x == 0) db[k] += s;
  }
}

}  // namespace

void conv2d_cuda_cap_chunk_images_for_testing(int images) {
  cap_chunk_images.store(images > 0 ? images : 0);
}

std::size_t conv2d_workspace_bytes_cuda(const Conv2dParams& p) {
  return static_cast<std::size_t>(conv_plan(p).total_floats) * sizeof(float);
}

void conv2d_forward_cuda(const Conv2dParams& p, const float* x, const float* w, const float* b,
                         float* y, void* workspace, Stream stream) {
  const ConvPlan pl = conv_plan(p);
  float* col = static_cast<float*>(workspace);
  const int64_t chw = static_cast<int64_t>(p.C) * p.H * p.W, kpq = p.K * pl.pq;
  // y_b (K, PQ) = W (K, CRS) col_b (CRS, PQ)
  GemmParams g = gemm_params(false, false, p.K, static_cast<int>(pl.pq), static_cast<int>(pl.crs));
  for (int n0 = 0; n0 < p.N; n0 += pl.nb) {
    const int nb = std::min(pl.nb, p.N - n0);
    const float* src = x + n0 * chw;
    if (!is_pointwise(p)) {
      SN_LAUNCH("im2col_kernel", im2col_kernel<false>, grid_for(nb * pl.crs * pl.pq), kThreads, 0,
                stream, p, n0, nb, x, col);
      src = col;
    }
    gemm_batched(g, w, 0, src, pl.crs * pl.pq, y + n0 * kpq, kpq, nb, stream);
  }
  if (b != nullptr) {
    const int64_t total = static_cast<int64_t>(p.N) * kpq;
    SN_LAUNCH("add_bias_kernel", add_bias_kernel, grid_for(total), kThreads, 0, stream, total,
              pl.pq, p.K, b, y);
  }
}

void conv2d_backward_data_cuda(const Conv2dParams& p, const float* dy, const float* w, float* dx,
                               void* workspace, Stream stream) {
  const ConvPlan pl = conv_plan(p);
  float* dcol = static_cast<float*>(workspace);
  const int64_t chw = static_cast<int64_t>(p.C) * p.H * p.W, kpq = p.K * pl.pq;
  if (is_pointwise(p)) {
    // dx_b (C, HW) += Wᵀ (C, K) dy_b (K, HW)
    GemmParams g = gemm_params(true, false, p.C, static_cast<int>(pl.pq), p.K, 1.0f, 1.0f);
    for (int n0 = 0; n0 < p.N; n0 += 65535) {
      const int nb = std::min(65535, p.N - n0);
      gemm_batched(g, w, 0, dy + n0 * kpq, kpq, dx + n0 * chw, chw, nb, stream);
    }
    return;
  }
  // dcol_b (CRS, PQ) = Wᵀ (CRS, K) dy_b (K, PQ)
  GemmParams g = gemm_params(true, false, static_cast<int>(pl.crs), static_cast<int>(pl.pq), p.K);
  for (int n0 = 0; n0 < p.N; n0 += pl.nb) {
    const int nb = std::min(pl.nb, p.N - n0);
    gemm_batched(g, w, 0, dy + n0 * kpq, kpq, dcol, pl.crs * pl.pq, nb, stream);
    SN_LAUNCH("col2im_kernel", col2im_kernel, grid_for(static_cast<int64_t>(nb) * chw), kThreads, 0,
              stream, p, n0, nb, dcol, dx);
  }
}

void conv2d_backward_weight_cuda(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                 float* db, void* workspace, Stream stream) {
  const ConvPlan pl = conv_plan(p);
  float* col = static_cast<float*>(workspace);
  float* dyt = col + pl.col_floats;
  float* partial = dyt + pl.dyt_floats;
  const int64_t dw_floats = p.K * pl.crs, pitch = round4(dw_floats);
  const int tiles = ((p.K + 127) / 128) * static_cast<int>((pl.crs + 127) / 128);
  for (int n0 = 0; n0 < p.N; n0 += pl.nb) {
    const int nb = std::min(pl.nb, p.N - n0);
    const int64_t len = nb * pl.pq;  // reduction length of this chunk
    SN_LAUNCH("im2col_kernel", im2col_kernel<true>, grid_for(nb * pl.crs * pl.pq), kThreads, 0,
              stream, p, n0, nb, x, col);
    SN_LAUNCH("transpose_dy_kernel", transpose_dy_kernel, grid_for(len * p.K), kThreads, 0, stream,
              p, n0, nb, dy, dyt);
    // Split the reduction while the GEMM alone would leave most SMs idle and
    // each slice keeps at least 512 terms. Slices have equal length except the
    // last, which runs as its own GEMM.
    int split = std::clamp(kTargetBlocks / std::max(tiles, 1), 1, pl.max_split);
    split = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(split, len / 512)));
    const int64_t slice = round4((len + split - 1) / split);  // float4-aligned slice starts
    split = static_cast<int>((len + slice - 1) / slice);
    GemmParams g =
        gemm_params(false, true, p.K, static_cast<int>(pl.crs), static_cast<int>(len), 1.0f, 1.0f);
    if (split <= 1) {
      gemm_batched(g, dyt, 0, col, 0, dw, 0, 1, stream);  // dW += dyT colᵀ
      continue;
    }
    g.beta = 0.0f;  // slices write partial products; the sum below accumulates
    g.K = static_cast<int>(slice);
    gemm_batched(g, dyt, slice, col, slice, partial, pitch, split - 1, stream);
    g.K = static_cast<int>(len - slice * (split - 1));
    gemm_batched(g, dyt + slice * (split - 1), 0, col + slice * (split - 1), 0,
                 partial + pitch * (split - 1), 0, 1, stream);
    SN_LAUNCH("sum_partials_kernel", sum_partials_kernel, grid_for(dw_floats), kThreads, 0, stream,
              dw_floats, split, pitch, partial, dw);
  }
  if (db != nullptr) {
    SN_LAUNCH("bias_grad_kernel", bias_grad_kernel, static_cast<unsigned>(std::min(p.K, 65535)),
              kThreads, 0, stream, p, dy, db);
  }
}

}  // namespace scratchnet::kernels
