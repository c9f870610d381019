// Bilinear resize on the GPU (align_corners=False; see resize.h), and the data
// pipeline's fused gather + /255 + resize of uint8 images.
// The source taps are computed per output coordinate with exactly the CPU
// reference's float operations (__fmul_rn/__fadd_rn keep nvcc from fusing
// them into FMAs), so both backends pick the same neighbours and weights.
// Backward GATHERS: each input pixel sums the outputs whose taps use it, over
// a conservative range of output rows/columns re-checked exactly; fixed order,
// no atomics.
#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/resize.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

struct Tap {
  int i0, i1;
  float l0, l1;
};

__device__ __forceinline__ Tap tap(int o, int in, int out) {
  if (in == out) return {o, o, 1.0f, 0.0f};
  const float scale = __fdiv_rn(static_cast<float>(in), static_cast<float>(out));
  float src = __fadd_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(o), 0.5f)), -0.5f);
  if (src < 0.0f) src = 0.0f;
  const int i0 = static_cast<int>(src);
  const int i1 = i0 < in - 1 ? i0 + 1 : i0;
  float l1 = __fadd_rn(src, -static_cast<float>(i0));
  l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
  return {i0, i1, __fadd_rn(1.0f, -l1), l1};
}

// Weight of input index i in output o's two taps (0 when unused).
__device__ __forceinline__ float tap_weight(const Tap& t, int i) {
  float w = 0.0f;
  if (t.i0 == i) w = __fadd_rn(w, t.l0);
  if (t.i1 == i) w = __fadd_rn(w, t.l1);
  return w;
}

// Outputs [lo, hi) that may use input index i: their source lies in [i-1, i+1).
__device__ __forceinline__ void candidates(int i, int in, int out, int* lo, int* hi) {
  if (in == out) {
    *lo = i;
    *hi = i + 1;
    return;
  }
  const double inv = static_cast<double>(out) / in;
  const double a = floor((i - 0.5) * inv - 0.5) - 1.0, b = ceil((i + 1.5) * inv - 0.5) + 2.0;
  *lo = static_cast<int>(fmax(a, 0.0));
  *hi = static_cast<int>(fmin(b, static_cast<double>(out)));
}

template <typename T>
__device__ __forceinline__ float sample(const ResizeParams& p, const T* plane, int oh, int ow,
                                        float div) {
  const Tap a = tap(oh, p.H, p.OH), b = tap(ow, p.W, p.OW);
  const T* r0 = plane + static_cast<int64_t>(a.i0) * p.W;
  const T* r1 = plane + static_cast<int64_t>(a.i1) * p.W;
  auto v = [div](T x) { return __fdiv_rn(static_cast<float>(x), div); };
  const float top = __fadd_rn(__fmul_rn(b.l0, v(r0[b.i0])), __fmul_rn(b.l1, v(r0[b.i1])));
  const float bottom = __fadd_rn(__fmul_rn(b.l0, v(r1[b.i0])), __fmul_rn(b.l1, v(r1[b.i1])));
  return __fadd_rn(__fmul_rn(a.l0, top), __fmul_rn(a.l1, bottom));
}

__global__ void resize_forward_kernel(ResizeParams p, const float* __restrict__ x,
                                      float* __restrict__ y) {
  const int64_t out_plane = static_cast<int64_t>(p.OH) * p.OW;
  const int64_t total = static_cast<int64_t>(p.N) * p.C * out_plane;
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride()) {
    const int ow = static_cast<int>(idx % p.OW), oh = static_cast<int>((idx / p.OW) % p.OH);
    const int64_t plane = idx / out_plane;
    y[idx] = sample(p, x + plane * p.H * p.W, oh, ow, 1.0f);
  }
}

__global__ void resize_backward_kernel(ResizeParams p, const float* __restrict__ dy,
                                       float* __restrict__ dx) {
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t total = static_cast<int64_t>(p.N) * p.C * in_plane;
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride()) {
    const int w = static_cast<int>(idx % p.W), h = static_cast<int>((idx / p.W) % p.H);
    const float* g = dy + (idx / in_plane) * p.OH * p.OW;
    int oh0, oh1, ow0, ow1;
    candidates(h, p.H, p.OH, &oh0, &oh1);
    candidates(w, p.W, p.OW, &ow0, &ow1);
    float sum = 0.0f;
    for (int oh = oh0; oh < oh1; ++oh) {
      const float wy = tap_weight(tap(oh, p.H, p.OH), h);
      if (wy == 0.0f) continue;
      for (int ow = ow0; ow < ow1; ++ow) {
        const float wx = tap_weight(tap(ow, p.W, p.OW), w);
        if (wx != 0.0f) sum += wy * wx * g[static_cast<int64_t>(oh) * p.OW + ow];
      }
    }
    dx[idx] += sum;
  }
}

__global__ void resize_gather_u8_kernel(ResizeParams p, int count,
                                        const uint8_t* __restrict__ images,
                                        const int32_t* __restrict__ index, float* __restrict__ y) {
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.OH) * p.OW;
  const int64_t total = static_cast<int64_t>(p.N) * out_plane;
  const bool copy = p.OH == p.H && p.OW == p.W;
  for (int64_t idx = global_tid(); idx < total; idx += grid_stride()) {
    const int64_t b = idx / out_plane, j = idx % out_plane;
    const int32_t img = index[b];
    if (img < 0 || img >= count) {  // the op layer cannot check device indices: no wild read
      y[idx] = NAN;
      continue;
    }
    const uint8_t* src = images + img * in_plane;
    if (copy) {
      y[idx] = __fdiv_rn(static_cast<float>(src[j]), 255.0f);
    } else {
      y[idx] = sample(p, src, static_cast<int>(j / p.OW), static_cast<int>(j % p.OW), 255.0f);
    }
  }
}

}  // namespace

void resize_bilinear_forward_cuda(const ResizeParams& p, const float* x, float* y, Stream stream) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.OH * p.OW;
  SN_LAUNCH("resize_forward_kernel", resize_forward_kernel, grid_for(total), kThreads, 0, stream, p,
            x, y);
}

void resize_bilinear_backward_cuda(const ResizeParams& p, const float* dy, float* dx,
                                   Stream stream) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.H * p.W;
  SN_LAUNCH("resize_backward_kernel", resize_backward_kernel, grid_for(total), kThreads, 0, stream,
            p, dy, dx);
}

void resize_gather_u8_cuda(const ResizeParams& p, int count, const uint8_t* images,
                           const int32_t* index, float* y, Stream stream) {
  const int64_t total = static_cast<int64_t>(p.N) * p.OH * p.OW;
  if (total <= 0) return;
  SN_LAUNCH("resize_gather_u8_kernel", resize_gather_u8_kernel, grid_for(total), kThreads, 0,
            stream, p, count, images, index, y);
}

}  // namespace scratchnet::kernels
