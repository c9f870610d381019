// Max, average and global average pooling on the GPU, NCHW, PyTorch
// semantics (see pool2d.h). One thread per output element (forward) or per
// input element (backward): backward GATHERS from the outputs whose window
// covers the input pixel, in a fixed order, so it needs no atomics and is
// bit-identical run to run.
//   max forward:  the first maximum in window order wins; NaN propagates
//                 (the CPU reference's rule); argmax = h*W + w in its plane.
//   max backward: dx[h, w] += Σ dy[p, q] over windows with argmax[p, q] == h*W + w
//                 (write_dx: = instead of +=; every dx element is visited).
//   avg:          padding counts (divide by R*S).
//   global avg:   one block per plane, double accumulation, fixed-order tree.
// The avg and global avg backward kernels take the same write flag as max's:
// each thread owns its dx element, so writing needs no zeroing first.
#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/pool2d.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

__device__ __forceinline__ int64_t total_out(const Pool2dParams& p) {
  return static_cast<int64_t>(p.N) * p.C * p.P * p.Q;
}
__device__ __forceinline__ int64_t total_in(const Pool2dParams& p) {
  return static_cast<int64_t>(p.N) * p.C * p.H * p.W;
}

// Outputs o along one axis whose window [o*stride - pad, o*stride - pad + R)
// contains input position i: o in [lo, hi).
__device__ __forceinline__ void covering(int i, int R, int stride, int pad, int out, int* lo,
                                         int* hi) {
  const int t = i + pad - R + 1;  // o*stride >= t
  *lo = t <= 0 ? 0 : (t + stride - 1) / stride;
  *hi = min(out, (i + pad) / stride + 1);
}

__global__ void max_forward_kernel(Pool2dParams p, const float* __restrict__ x,
                                   float* __restrict__ y, int32_t* __restrict__ argmax) {
  for (int64_t idx = global_tid(); idx < total_out(p); idx += grid_stride()) {
    const int ow = static_cast<int>(idx % p.Q), oh = static_cast<int>((idx / p.Q) % p.P);
    const int64_t plane = idx / (static_cast<int64_t>(p.P) * p.Q);
    const float* xp = x + plane * p.H * p.W;
    const int h0 = max(oh * p.stride - p.pad, 0), h1 = min(oh * p.stride - p.pad + p.R, p.H);
    const int w0 = max(ow * p.stride - p.pad, 0), w1 = min(ow * p.stride - p.pad + p.S, p.W);
    int best_i = h0 * p.W + w0;
    float best = -INFINITY;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) {
        const float v = xp[h * p.W + w];
        if (v > best || (isnan(v) && !isnan(best))) {
          best = v;
          best_i = h * p.W + w;
        }
      }
    y[idx] = best;
    argmax[idx] = best_i;
  }
}

__global__ void max_backward_kernel(Pool2dParams p, const float* __restrict__ dy,
                                    const int32_t* __restrict__ argmax, float* __restrict__ dx,
                                    bool write) {
  for (int64_t idx = global_tid(); idx < total_in(p); idx += grid_stride()) {
    const int w = static_cast<int>(idx % p.W), h = static_cast<int>((idx / p.W) % p.H);
    const int64_t plane = idx / (static_cast<int64_t>(p.H) * p.W);
    const int64_t base = plane * p.P * p.Q;
    int ph0, ph1, pw0, pw1;
    covering(h, p.R, p.stride, p.pad, p.P, &ph0, &ph1);
    covering(w, p.S, p.stride, p.pad, p.Q, &pw0, &pw1);
    const int32_t me = h * p.W + w;
    float sum = 0.0f;
    for (int oh = ph0; oh < ph1; ++oh)
      for (int ow = pw0; ow < pw1; ++ow) {
        const int64_t o = base + oh * p.Q + ow;
        if (argmax[o] == me) sum += dy[o];
      }
    dx[idx] = write ? sum : dx[idx] + sum;
  }
}

__global__ void avg_forward_kernel(Pool2dParams p, const float* __restrict__ x,
                                   float* __restrict__ y) {
  const float inv = 1.0f / static_cast<float>(p.R * p.S);
  for (int64_t idx = global_tid(); idx < total_out(p); idx += grid_stride()) {
    const int ow = static_cast<int>(idx % p.Q), oh = static_cast<int>((idx / p.Q) % p.P);
    const int64_t plane = idx / (static_cast<int64_t>(p.P) * p.Q);
    const float* xp = x + plane * p.H * p.W;
    const int h0 = max(oh * p.stride - p.pad, 0), h1 = min(oh * p.stride - p.pad + p.R, p.H);
    const int w0 = max(ow * p.stride - p.pad, 0), w1 = min(ow * p.stride - p.pad + p.S, p.W);
    float s = 0.0f;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) s += xp[h * p.W + w];
    y[idx] = s * inv;
  }
}

__global__ void avg_backward_kernel(Pool2dParams p, const float* __restrict__ dy,
                                    float* __restrict__ dx, bool write) {
  const float inv = 1.0f / static_cast<float>(p.R * p.S);
  for (int64_t idx = global_tid(); idx < total_in(p); idx += grid_stride()) {
    const int w = static_cast<int>(idx % p.W), h = static_cast<int>((idx / p.W) % p.H);
    const int64_t plane = idx / (static_cast<int64_t>(p.H) * p.W);
    const int64_t base = plane * p.P * p.Q;
    int ph0, ph1, pw0, pw1;
    covering(h, p.R, p.stride, p.pad, p.P, &ph0, &ph1);
    covering(w, p.S, p.stride, p.pad, p.Q, &pw0, &pw1);
    float sum = 0.0f;
    for (int oh = ph0; oh < ph1; ++oh)
      for (int ow = pw0; ow < pw1; ++ow) sum += dy[base + oh * p.Q + ow] * inv;
    dx[idx] = write ? sum : dx[idx] + sum;
  }
}

__global__ void global_avg_forward_kernel(int planes, int hw, const float* __restrict__ x,
                                          float* __restrict__ y) {
  __shared__ double smem[kThreads];
  for (int plane = blockIdx.x; plane < planes; plane += gridDim.x) {
    const float* xp = x + static_cast<int64_t>(plane) * hw;
    double s = 0.0;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) s += xp[j];
    s = block_reduce_sum(s, smem);
    if (threadIdx.x == 0) y[plane] = static_cast<float>(s / hw);
  }
}

__global__ void global_avg_backward_kernel(int planes, int hw, const float* __restrict__ dy,
                                           float* __restrict__ dx, bool write) {
  const float inv = 1.0f / static_cast<float>(hw);
  const int64_t total = static_cast<int64_t>(planes) * hw;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const float g = dy[i / hw] * inv;
    dx[i] = write ? g : dx[i] + g;
  }
}

int64_t outputs(const Pool2dParams& p) {
  return static_cast<int64_t>(p.N) * p.C * p.P * p.Q;
}
int64_t inputs(const Pool2dParams& p) {
  return static_cast<int64_t>(p.N) * p.C * p.H * p.W;
}

}  // namespace

void max_pool2d_forward_cuda(const Pool2dParams& p, const float* x, float* y, int32_t* argmax,
                             Stream stream) {
  SN_LAUNCH("max_pool2d max_forward_kernel", max_forward_kernel, grid_for(outputs(p)), kThreads, 0,
            stream, p, x, y, argmax);
}

void max_pool2d_backward_cuda(const Pool2dParams& p, const float* dy, const int32_t* argmax,
                              float* dx, Stream stream, bool write_dx) {
  SN_LAUNCH("max_pool2d max_backward_kernel", max_backward_kernel, grid_for(inputs(p)), kThreads, 0,
            stream, p, dy, argmax, dx, write_dx);
}

void avg_pool2d_forward_cuda(const Pool2dParams& p, const float* x, float* y, Stream stream) {
  SN_LAUNCH("avg_pool2d avg_forward_kernel", avg_forward_kernel, grid_for(outputs(p)), kThreads, 0,
            stream, p, x, y);
}

void avg_pool2d_backward_cuda(const Pool2dParams& p, const float* dy, float* dx, Stream stream,
                              bool write) {
  SN_LAUNCH("avg_pool2d avg_backward_kernel", avg_backward_kernel, grid_for(inputs(p)), kThreads, 0,
            stream, p, dy, dx, write);
}

void global_avg_pool_forward_cuda(int planes, int hw, const float* x, float* y, Stream stream) {
  if (planes <= 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(planes, kMaxBlocks));
  SN_LAUNCH("global_avg_forward_kernel", global_avg_forward_kernel, blocks, kThreads, 0, stream,
            planes, hw, x, y);
}

void global_avg_pool_backward_cuda(int planes, int hw, const float* dy, float* dx, Stream stream,
                                   bool write) {
  SN_LAUNCH("global_avg_backward_kernel", global_avg_backward_kernel,
            grid_for(static_cast<int64_t>(planes) * hw), kThreads, 0, stream, planes, hw, dy, dx,
            write);
}

}  // namespace scratchnet::kernels
