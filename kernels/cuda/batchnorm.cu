// Batch normalisation on the GPU, PyTorch semantics (see batchnorm.h).
//   x, y, dy, dx (N, C, HW): channel c's values are N runs of HW floats.
// Statistics, like the CPU reference, use two passes (mean, then squared
// deviations) accumulated in double, and are reduced in two fixed-order levels
// so the results are bit-identical run to run (no atomics):
//   1. partial_kernel: block (c, j) sums chunk j of channel c's m = N*HW values
//      (a fixed tree over its threads) into workspace partial[c][j];
//   2. one thread per channel adds its chunks j = 0, 1, ... in order.
// Training forward: SUM pass -> mean; SQDEV pass -> biased var, invstd, running
// stats, and the per-channel scale; then y = (x - mean) * scale + beta.
// Backward: one pass sums dy and dy*xhat, then dx elementwise.
// Workspace (batch_norm_workspace_bytes_cuda): doubles partial[C][chunks][2],
// stat[C][2]; floats scale[C].
// The affine maps subtract the mean first, with the CPU reference's float
// operations unfused (__f*_rn: nvcc would contract them into an FMA): folding
// the mean into one shift (x * scale + (beta - mean * scale)) cancels
// catastrophically when |mean| >> std.
#include <algorithm>

#include "kernels/batchnorm.h"
#include "kernels/cuda/launch.cuh"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

constexpr int kMaxChunks = 32;
constexpr int64_t kChunkLen = 8192;

int chunks_for(const BatchNormParams& p) {
  const int64_t m = static_cast<int64_t>(p.N) * p.HW;
  return static_cast<int>(std::clamp<int64_t>((m + kChunkLen - 1) / kChunkLen, 1, kMaxChunks));
}

struct Workspace {
  double* partial;  // [C][chunks][2]
  double* stat;     // [C][2]
  float* scale;     // [C]
};

Workspace carve(const BatchNormParams& p, void* ws) {
  const int64_t C = p.C, chunks = chunks_for(p);
  Workspace w;
  w.partial = static_cast<double*>(ws);
  w.stat = w.partial + C * chunks * 2;
  w.scale = reinterpret_cast<float*>(w.stat + C * 2);
  return w;
}

enum class Pass { Sum, SqDev, Backward };

__device__ __forceinline__ int64_t offset_of(const BatchNormParams& p, int c, int64_t e) {
  const int64_t n = e / p.HW, i = e % p.HW;
  return (n * p.C + c) * p.HW + i;
}

// Block (c = blockIdx.x, chunk j = blockIdx.y). Sum: v0 = Σ x.
// SqDev: v0 = Σ (x - mean)^2 with mean = stat[c][0]. Backward: v0 = Σ dy,
// v1 = Σ dy * xhat with xhat computed in float as the CPU reference does.
template <Pass P>
__global__ void partial_kernel(BatchNormParams p, int chunks, const float* __restrict__ x,
                               const float* __restrict__ dy, const double* __restrict__ stat,
                               const float* __restrict__ mean_f, const float* __restrict__ invstd_f,
                               double* __restrict__ partial) {
  __shared__ double smem[kThreads];
  const int c = blockIdx.x, j = blockIdx.y;
  const int64_t m = static_cast<int64_t>(p.N) * p.HW;
  const int64_t per = (m + chunks - 1) / chunks;
  const int64_t lo = j * per, hi = min(m, lo + per);
  double v0 = 0.0, v1 = 0.0;
  const double mean = P == Pass::SqDev ? stat[2 * c] : 0.0;
  const float mf = P == Pass::Backward ? mean_f[c] : 0.0f;
  const float inv = P == Pass::Backward ? invstd_f[c] : 0.0f;
  for (int64_t e = lo + threadIdx.x; e < hi; e += blockDim.x) {
    const int64_t o = offset_of(p, c, e);
    if (P == Pass::Sum) {
      v0 += x[o];
    } else if (P == Pass::SqDev) {
      const double d = x[o] - mean;
      v0 += d * d;
    } else {
      const float g = dy[o];
      v0 += g;
      v1 += static_cast<double>(g) * ((x[o] - mf) * inv);
    }
  }
  v0 = block_reduce_sum(v0, smem);
  if (P == Pass::Backward) v1 = block_reduce_sum(v1, smem);
  if (threadIdx.x == 0) {
    partial[(static_cast<int64_t>(c) * chunks + j) * 2] = v0;
    partial[(static_cast<int64_t>(c) * chunks + j) * 2 + 1] = v1;
  }
}

__device__ __forceinline__ void sum_chunks(const double* partial, int c, int chunks, double* s0,
                                           double* s1) {
  double a = 0.0, b = 0.0;
  for (int j = 0; j < chunks; ++j) {
    a += partial[(static_cast<int64_t>(c) * chunks + j) * 2];
    b += partial[(static_cast<int64_t>(c) * chunks + j) * 2 + 1];
  }
  *s0 = a;
  *s1 = b;
}

__global__ void finalize_mean_kernel(BatchNormParams p, int chunks, const double* partial,
                                     double* stat) {
  const double m = static_cast<double>(p.N) * p.HW;
  for (int64_t c = global_tid(); c < p.C; c += grid_stride()) {
    double s0, s1;
    sum_chunks(partial, static_cast<int>(c), chunks, &s0, &s1);
    stat[2 * c] = s0 / m;
  }
}

__global__ void finalize_var_kernel(BatchNormParams p, int chunks, const double* partial,
                                    const double* stat, const float* gamma, float* save_mean,
                                    float* save_invstd, float* running_mean, float* running_var,
                                    float* scale) {
  const double m = static_cast<double>(p.N) * p.HW;
  for (int64_t c = global_tid(); c < p.C; c += grid_stride()) {
    double sq, unused;
    sum_chunks(partial, static_cast<int>(c), chunks, &sq, &unused);
    const double mean = stat[2 * c];
    const double var = sq / m;
    const double invstd = 1.0 / sqrt(var + static_cast<double>(p.eps));
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
    const double var_unbiased = m > 1.0 ? sq / (m - 1.0) : var;
    running_mean[c] = static_cast<float>((1.0 - p.momentum) * running_mean[c] + p.momentum * mean);
    running_var[c] =
        static_cast<float>((1.0 - p.momentum) * running_var[c] + p.momentum * var_unbiased);
    scale[c] = static_cast<float>(invstd * gamma[c]);
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
    const int c = static_cast<int>((i / p.HW) % p.C);
    y[i] = affine(x[i], mean[c], scale[c], beta[c]);
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
    const int c = static_cast<int>((i / p.HW) % p.C);
    const double invstd = 1.0 / sqrt(static_cast<double>(rv[c]) + p.eps);
    y[i] = affine(x[i], rm[c], static_cast<float>(invstd * gamma[c]), beta[c]);
  }
}

__global__ void finalize_backward_kernel(BatchNormParams p, int chunks, const double* partial,
                                         double* stat, float* dgamma, float* dbeta) {
  for (int64_t c = global_tid(); c < p.C; c += grid_stride()) {
    double s_dy, s_dyx;
    sum_chunks(partial, static_cast<int>(c), chunks, &s_dy, &s_dyx);
    stat[2 * c] = s_dy;
    stat[2 * c + 1] = s_dyx;
    if (dbeta) dbeta[c] += static_cast<float>(s_dy);
    if (dgamma) dgamma[c] += static_cast<float>(s_dyx);
  }
}

__global__ void backward_dx_kernel(BatchNormParams p, bool training, const float* __restrict__ x,
                                   const float* __restrict__ dy, const float* __restrict__ gamma,
                                   const float* __restrict__ mean, const float* __restrict__ invstd,
                                   const double* __restrict__ stat, float* __restrict__ dx) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  const double m = static_cast<double>(p.N) * p.HW;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const int c = static_cast<int>((i / p.HW) % p.C);
    const float k = gamma[c] * invstd[c];
    if (!training) {
      dx[i] += k * dy[i];
      continue;
    }
    const float mean_dy = static_cast<float>(stat[2 * c] / m);
    const float mean_dy_xhat = static_cast<float>(stat[2 * c + 1] / m);
    const float xhat = (x[i] - mean[c]) * invstd[c];
    dx[i] += k * (dy[i] - mean_dy - xhat * mean_dy_xhat);
  }
}

unsigned channel_grid(int C) {
  return grid_for(C);
}

}  // namespace

std::size_t batch_norm_workspace_bytes_cuda(const BatchNormParams& p) {
  const std::size_t C = static_cast<std::size_t>(p.C), chunks = chunks_for(p);
  return (C * chunks * 2 + C * 2) * sizeof(double) + C * sizeof(float);
}

void batch_norm_forward_train_cuda(const BatchNormParams& p, const float* x, const float* gamma,
                                   const float* beta, float* y, float* save_mean,
                                   float* save_invstd, float* running_mean, float* running_var,
                                   void* workspace, Stream stream) {
  const int chunks = chunks_for(p);
  const Workspace w = carve(p, workspace);
  const dim3 grid(static_cast<unsigned>(p.C), static_cast<unsigned>(chunks));
  SN_LAUNCH("batch_norm partial_kernel<Sum>", partial_kernel<Pass::Sum>, grid, kThreads, 0, stream,
            p, chunks, x, nullptr, nullptr, nullptr, nullptr, w.partial);
  SN_LAUNCH("batch_norm finalize_mean_kernel", finalize_mean_kernel, channel_grid(p.C), kThreads, 0,
            stream, p, chunks, w.partial, w.stat);
  SN_LAUNCH("batch_norm partial_kernel<SqDev>", partial_kernel<Pass::SqDev>, grid, kThreads, 0,
            stream, p, chunks, x, nullptr, w.stat, nullptr, nullptr, w.partial);
  SN_LAUNCH("batch_norm finalize_var_kernel", finalize_var_kernel, channel_grid(p.C), kThreads, 0,
            stream, p, chunks, w.partial, w.stat, gamma, save_mean, save_invstd, running_mean,
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
                              const float* dy, const float* gamma, const float* save_mean,
                              const float* save_invstd, float* dx, float* dgamma, float* dbeta,
                              void* workspace, Stream stream) {
  const int chunks = chunks_for(p);
  const Workspace w = carve(p, workspace);
  const dim3 grid(static_cast<unsigned>(p.C), static_cast<unsigned>(chunks));
  SN_LAUNCH("batch_norm partial_kernel<Backward>", partial_kernel<Pass::Backward>, grid, kThreads,
            0, stream, p, chunks, x, dy, nullptr, save_mean, save_invstd, w.partial);
  SN_LAUNCH("batch_norm finalize_backward_kernel", finalize_backward_kernel, channel_grid(p.C),
            kThreads, 0, stream, p, chunks, w.partial, w.stat, dgamma, dbeta);
  if (dx == nullptr) return;
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.HW;
  SN_LAUNCH("batch_norm backward_dx_kernel", backward_dx_kernel, grid_for(total), kThreads, 0,
            stream, p, training, x, dy, gamma, save_mean, save_invstd, w.stat, dx);
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
