// Batch normalisation on the GPU, PyTorch semantics (see batchnorm.h).
//   x, y, dy, dx (N, C, HW): channel c's values are N runs of HW floats.
// Training forward reads x twice:
//   1. moments_kernel: block (c, j) reduces chunk j of channel c's m = N*HW
//      values to (count, mean, M2) in double: each thread takes its values in
//      groups of 4 (group mean and squared deviations exactly as a two-pass
//      would) merged with Chan's formula, then the block merges its threads in
//      a fixed tree; finalize_stats_kernel merges chunks j = 0, 1, ... in
//      order (one thread per channel) -> mean, biased var, invstd, running
//      stats and the per-channel scale;
//   2. affine_kernel: y = (x - mean) * scale + beta (+ ReLU with p.relu).
// Merging (count, mean, M2) never subtracts two large sums, so it stays as
// accurate as the two-pass reference when |mean| >> std (the one-pass
// E[x^2] - E[x]^2 would not); no atomics, so results are bit-identical run
// to run.
// Backward reads x, dy (and y with p.relu) twice: partial_kernel sums g and
// g*xhat per chunk, finalize_backward_kernel adds the chunks in order, then
// backward_dx_kernel; g = dy, or (y > 0 ? dy : 0) with the fused ReLU.
// Workspace (batch_norm_workspace_bytes_cuda): doubles partial[C][chunks][3],
// stat[C][2]; floats scale[C].
// The affine maps subtract the mean first, with the CPU reference's float
// operations unfused (__f*_rn: nvcc would contract them into an FMA): folding
// the mean into one shift (x * scale + (beta - mean * scale)) cancels
// catastrophically when |mean| >> std.
// Index arithmetic is 32-bit: batch_norm_params rejects N*C*HW >= INT_MAX.
#include <algorithm>

#include "kernels/batchnorm.h"
#include "kernels/cuda/launch.cuh"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

constexpr int kMaxChunks = 32;
constexpr int64_t kChunkLen = 8192;
constexpr int kPartial = 3;  // doubles per (channel, chunk)

int chunks_for(const BatchNormParams& p) {
  const int64_t m = static_cast<int64_t>(p.N) * p.HW;
  return static_cast<int>(std::clamp<int64_t>((m + kChunkLen - 1) / kChunkLen, 1, kMaxChunks));
}

struct Workspace {
  double* partial;  // [C][chunks][kPartial]
  double* stat;     // [C][2]
  float* scale;     // [C]
};

Workspace carve(const BatchNormParams& p, void* ws) {
  const int64_t C = p.C, chunks = chunks_for(p);
  Workspace w;
  w.partial = static_cast<double*>(ws);
  w.stat = w.partial + C * chunks * kPartial;
  w.scale = reinterpret_cast<float*>(w.stat + C * 2);
  return w;
}

// Element e in [0, N*HW) of channel c.
__device__ __forceinline__ int offset_of(const BatchNormParams& p, int c, int e) {
  const int n = e / p.HW, i = e - n * p.HW;
  return (n * p.C + c) * p.HW + i;
}

__device__ __forceinline__ int channel_of(const BatchNormParams& p, int i) {
  return (i / p.HW) % p.C;
}

// Count, mean and sum of squared deviations of a set of values.
struct Moments {
  double n, mean, m2;
};

// Chan et al.'s pairwise merge. Never divides by 0 for b.n > 0; an empty b
// leaves a unchanged (an empty a gives b).
__device__ __forceinline__ Moments merge(const Moments& a, const Moments& b) {
  if (b.n == 0.0) return a;
  const double n = a.n + b.n;
  const double d = b.mean - a.mean, f = b.n / n;
  return {n, a.mean + d * f, a.m2 + b.m2 + d * d * a.n * f};
}

// Block (c = blockIdx.x, chunk j = blockIdx.y): the moments of chunk j of
// channel c into partial[c][j]. blockDim.x is a power of 2 (kThreads).
__global__ void moments_kernel(BatchNormParams p, int chunks, const float* __restrict__ x,
                               double* __restrict__ partial) {
  __shared__ double sn[kThreads], smean[kThreads], sm2[kThreads];
  const int c = blockIdx.x, j = blockIdx.y;
  const int m = p.N * p.HW;
  const int per = (m + chunks - 1) / chunks;
  const int lo = min(m, j * per), hi = min(m, lo + per);
  const int B = blockDim.x;
  Moments t{0.0, 0.0, 0.0};
  int e = lo + static_cast<int>(threadIdx.x);
  // Groups of 4: one division per group; the group's own moments are exact
  // but for the rounding of a two-pass over 4 values.
  for (; e + 3 * B < hi; e += 4 * B) {
    const double v0 = x[offset_of(p, c, e)], v1 = x[offset_of(p, c, e + B)];
    const double v2 = x[offset_of(p, c, e + 2 * B)], v3 = x[offset_of(p, c, e + 3 * B)];
    const double gm = ((v0 + v1) + (v2 + v3)) * 0.25;
    const double d0 = v0 - gm, d1 = v1 - gm, d2 = v2 - gm, d3 = v3 - gm;
    t = merge(t, {4.0, gm, (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)});
  }
  for (; e < hi; e += B) t = merge(t, {1.0, static_cast<double>(x[offset_of(p, c, e)]), 0.0});
  const unsigned tid = threadIdx.x;
  sn[tid] = t.n;
  smean[tid] = t.mean;
  sm2[tid] = t.m2;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) {
      const Moments r =
          merge({sn[tid], smean[tid], sm2[tid]}, {sn[tid + s], smean[tid + s], sm2[tid + s]});
      sn[tid] = r.n;
      smean[tid] = r.mean;
      sm2[tid] = r.m2;
    }
    __syncthreads();
  }
  if (tid == 0) {
    double* out = partial + (static_cast<int64_t>(c) * chunks + j) * kPartial;
    out[0] = sn[0];
    out[1] = smean[0];
    out[2] = sm2[0];
  }
}

__global__ void finalize_stats_kernel(BatchNormParams p, int chunks, const double* partial,
                                      const float* gamma, float* save_mean, float* save_invstd,
                                      float* running_mean, float* running_var, float* scale) {
  const double m = static_cast<double>(p.N) * p.HW;
  for (int64_t c = global_tid(); c < p.C; c += grid_stride()) {
    Moments acc{0.0, 0.0, 0.0};
    for (int j = 0; j < chunks; ++j) {
      const double* q = partial + (c * chunks + j) * kPartial;
      acc = merge(acc, {q[0], q[1], q[2]});
    }
    const double mean = acc.mean;
    const double var = acc.m2 / m;
    const double invstd = 1.0 / sqrt(var + static_cast<double>(p.eps));
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
    const double var_unbiased = m > 1.0 ? acc.m2 / (m - 1.0) : var;
    running_mean[c] = static_cast<float>((1.0 - p.momentum) * running_mean[c] + p.momentum * mean);
    running_var[c] =
        static_cast<float>((1.0 - p.momentum) * running_var[c] + p.momentum * var_unbiased);
    scale[c] = static_cast<float>(invstd * gamma[c]);
  }
}

// The gradient reaching BN's output: dy, or ReLU's backward of it (y > 0).
__device__ __forceinline__ float grad_in(const float* __restrict__ y, const float* __restrict__ dy,
                                         int o) {
  return y == nullptr || y[o] > 0.0f ? dy[o] : 0.0f;
}

// Block (c = blockIdx.x, chunk j = blockIdx.y): v0 = Σ g, v1 = Σ g * xhat
// with xhat computed in float as the CPU reference does; y: the mask or null.
__global__ void partial_kernel(BatchNormParams p, int chunks, const float* __restrict__ x,
                               const float* __restrict__ y, const float* __restrict__ dy,
                               const float* __restrict__ mean_f, const float* __restrict__ invstd_f,
                               double* __restrict__ partial) {
  __shared__ double smem[kThreads];
  const int c = blockIdx.x, j = blockIdx.y;
  const int m = p.N * p.HW;
  const int per = (m + chunks - 1) / chunks;
  const int lo = min(m, j * per), hi = min(m, lo + per);
  double v0 = 0.0, v1 = 0.0;
  const float mf = mean_f[c], inv = invstd_f[c];
  for (int e = lo + static_cast<int>(threadIdx.x); e < hi; e += blockDim.x) {
    const int o = offset_of(p, c, e);
    const float g = grad_in(y, dy, o);
    v0 += g;
    v1 += static_cast<double>(g) * ((x[o] - mf) * inv);
  }
  v0 = block_reduce_sum(v0, smem);
  v1 = block_reduce_sum(v1, smem);
  if (threadIdx.x == 0) {
    partial[(static_cast<int64_t>(c) * chunks + j) * kPartial] = v0;
    partial[(static_cast<int64_t>(c) * chunks + j) * kPartial + 1] = v1;
  }
}

// y = (x - mean) * scale + beta, rounded as the CPU reference's affine_channel.
__device__ __forceinline__ float affine(float x, float mean, float scale, float beta) {
  return __fadd_rn(__fmul_rn(__fsub_rn(x, mean), scale), beta);
}

__global__ void affine_kernel(BatchNormParams p, const float* __restrict__ x,
                              const float* __restrict__ mean, const float* __restrict__ scale,
                              const float* __restrict__ beta, float* __restrict__ y) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const int c = channel_of(p, static_cast<int>(i));
    const float v = affine(x[i], mean[c], scale[c], beta[c]);
    y[i] = p.relu && !(v > 0.0f) ? 0.0f : v;
  }
}

// Eval: the running statistics define the affine map; computed per element in
// double exactly as the CPU reference computes it per channel.
__global__ void eval_kernel(BatchNormParams p, const float* __restrict__ x,
                            const float* __restrict__ gamma, const float* __restrict__ beta,
                            const float* __restrict__ rm, const float* __restrict__ rv,
                            float* __restrict__ y) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const int c = channel_of(p, static_cast<int>(i));
    const double invstd = 1.0 / sqrt(static_cast<double>(rv[c]) + p.eps);
    const float v = affine(x[i], rm[c], static_cast<float>(invstd * gamma[c]), beta[c]);
    y[i] = p.relu && !(v > 0.0f) ? 0.0f : v;
  }
}

__global__ void finalize_backward_kernel(BatchNormParams p, int chunks, const double* partial,
                                         double* stat, float* dgamma, float* dbeta) {
  for (int64_t c = global_tid(); c < p.C; c += grid_stride()) {
    double s_dy = 0.0, s_dyx = 0.0;
    for (int j = 0; j < chunks; ++j) {
      s_dy += partial[(c * chunks + j) * kPartial];
      s_dyx += partial[(c * chunks + j) * kPartial + 1];
    }
    stat[2 * c] = s_dy;
    stat[2 * c + 1] = s_dyx;
    if (dbeta) dbeta[c] += static_cast<float>(s_dy);
    if (dgamma) dgamma[c] += static_cast<float>(s_dyx);
  }
}

__global__ void backward_dx_kernel(BatchNormParams p, bool training, const float* __restrict__ x,
                                   const float* __restrict__ y, const float* __restrict__ dy,
                                   const float* __restrict__ gamma, const float* __restrict__ mean,
                                   const float* __restrict__ invstd,
                                   const double* __restrict__ stat, float* __restrict__ dx,
                                   bool write) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  const double m = static_cast<double>(p.N) * p.HW;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const int c = channel_of(p, static_cast<int>(i));
    const float k = gamma[c] * invstd[c];
    const float g = grad_in(y, dy, static_cast<int>(i));
    if (!training) {
      dx[i] = write ? k * g : dx[i] + k * g;
      continue;
    }
    const float mean_dy = static_cast<float>(stat[2 * c] / m);
    const float mean_dy_xhat = static_cast<float>(stat[2 * c + 1] / m);
    const float xhat = (x[i] - mean[c]) * invstd[c];
    const float v = k * (g - mean_dy - xhat * mean_dy_xhat);
    dx[i] = write ? v : dx[i] + v;
  }
}

unsigned channel_grid(int C) {
  return grid_for(C);
}

}  // namespace

std::size_t batch_norm_workspace_bytes_cuda(const BatchNormParams& p) {
  const std::size_t C = static_cast<std::size_t>(p.C), chunks = chunks_for(p);
  return (C * chunks * kPartial + C * 2) * sizeof(double) + C * sizeof(float);
}

void batch_norm_forward_train_cuda(const BatchNormParams& p, const float* x, const float* gamma,
                                   const float* beta, float* y, float* save_mean,
                                   float* save_invstd, float* running_mean, float* running_var,
                                   void* workspace, Stream stream) {
  const int chunks = chunks_for(p);
  const Workspace w = carve(p, workspace);
  const dim3 grid(static_cast<unsigned>(p.C), static_cast<unsigned>(chunks));
  SN_LAUNCH("batch_norm moments_kernel", moments_kernel, grid, kThreads, 0, stream, p, chunks, x,
            w.partial);
  SN_LAUNCH("batch_norm finalize_stats_kernel", finalize_stats_kernel, channel_grid(p.C), kThreads,
            0, stream, p, chunks, w.partial, gamma, save_mean, save_invstd, running_mean,
            running_var, w.scale);
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  SN_LAUNCH("batch_norm affine_kernel", affine_kernel, grid_for(total), kThreads, 0, stream, p, x,
            save_mean, w.scale, beta, y);
}

void batch_norm_forward_eval_cuda(const BatchNormParams& p, const float* x, const float* gamma,
                                  const float* beta, const float* running_mean,
                                  const float* running_var, float* y, Stream stream) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  SN_LAUNCH("batch_norm eval_kernel", eval_kernel, grid_for(total), kThreads, 0, stream, p, x,
            gamma, beta, running_mean, running_var, y);
}

void batch_norm_backward_cuda(const BatchNormParams& p, bool training, const float* x,
                              const float* y, const float* dy, const float* gamma,
                              const float* save_mean, const float* save_invstd, float* dx,
                              float* dgamma, float* dbeta, void* workspace, Stream stream,
                              bool write_dx) {
  const int chunks = chunks_for(p);
  const Workspace w = carve(p, workspace);
  const float* ymask = p.relu ? y : nullptr;
  const dim3 grid(static_cast<unsigned>(p.C), static_cast<unsigned>(chunks));
  SN_LAUNCH("batch_norm partial_kernel", partial_kernel, grid, kThreads, 0, stream, p, chunks, x,
            ymask, dy, save_mean, save_invstd, w.partial);
  SN_LAUNCH("batch_norm finalize_backward_kernel", finalize_backward_kernel, channel_grid(p.C),
            kThreads, 0, stream, p, chunks, w.partial, w.stat, dgamma, dbeta);
  if (dx == nullptr) return;
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  SN_LAUNCH("batch_norm backward_dx_kernel", backward_dx_kernel, grid_for(total), kThreads, 0,
            stream, p, training, x, ymask, dy, gamma, save_mean, save_invstd, w.stat, dx, write_dx);
}

namespace {
__global__ void invstd_kernel(int C, float eps, const float* __restrict__ var,
                              float* __restrict__ invstd) {
  for (int64_t c = cudadetail::global_tid(); c < C; c += cudadetail::grid_stride())
    invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(var[c]) + eps));
}
}  // namespace

void batch_norm_invstd_cuda(int C, float eps, const float* var, float* invstd, Stream stream) {
  SN_LAUNCH("batch_norm invstd_kernel", invstd_kernel, cudadetail::grid_for(C),
            cudadetail::kThreads, 0, stream, C, eps, var, invstd);
}

}  // namespace scratchnet::kernels
