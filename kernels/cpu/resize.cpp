// CPU reference for bilinear resize, torch's interpolate(mode='bilinear',
// align_corners=False), and the data pipeline's fused gather + /255 + resize.
// Layout NCHW. The source positions and weights depend only on the output
// row (or column), so they are computed once per call, in float as
// PyTorch's CPU kernel does, and shared by all N*C planes. Planes run in
// parallel; a backward plane scatters only into its own dx plane.
#include "kernels/resize.h"

#include <cmath>
#include <vector>

namespace scratchnet::kernels {

namespace {

// For one output coordinate: the two source neighbours and their weights.
struct Tap {
  int i0, i1;
  float l0, l1;
};

std::vector<Tap> taps(int in, int out) {
  std::vector<Tap> t(static_cast<std::size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int o = 0; o < out; ++o) {
    if (in == out) {  // PyTorch copies exactly when the size is unchanged
      t[o] = {o, o, 1.0f, 0.0f};
      continue;
    }
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    const int i0 = static_cast<int>(src);  // src >= 0: truncation is floor
    const int i1 = i0 < in - 1 ? i0 + 1 : i0;
    float l1 = src - static_cast<float>(i0);
    l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
    t[o] = {i0, i1, 1.0f - l1, l1};
  }
  return t;
}

// One plane; T is float (activations) or uint8_t (raw images, divided by `div`).
template <typename T>
void resize_plane(const ResizeParams& p, const std::vector<Tap>& th, const std::vector<Tap>& tw,
                  const T* x, float div, float* y) {
  for (int oh = 0; oh < p.OH; ++oh) {
    const Tap& a = th[oh];
    const T* r0 = x + static_cast<int64_t>(a.i0) * p.W;
    const T* r1 = x + static_cast<int64_t>(a.i1) * p.W;
    float* yr = y + static_cast<int64_t>(oh) * p.OW;
    for (int ow = 0; ow < p.OW; ++ow) {
      const Tap& b = tw[ow];
      const float top =
          b.l0 * (static_cast<float>(r0[b.i0]) / div) + b.l1 * (static_cast<float>(r0[b.i1]) / div);
      const float bottom =
          b.l0 * (static_cast<float>(r1[b.i0]) / div) + b.l1 * (static_cast<float>(r1[b.i1]) / div);
      yr[ow] = a.l0 * top + a.l1 * bottom;
    }
  }
}

}  // namespace

void resize_bilinear_forward_cpu(const ResizeParams& p, const float* x, float* y) {
  const auto th = taps(p.H, p.OH), tw = taps(p.W, p.OW);
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.OH) * p.OW;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i)
    resize_plane(p, th, tw, x + i * in_plane, 1.0f, y + i * out_plane);
}

void resize_bilinear_backward_cpu(const ResizeParams& p, const float* dy, float* dx) {
  const auto th = taps(p.H, p.OH), tw = taps(p.W, p.OW);
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.OH) * p.OW;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i) {
    const float* g = dy + i * out_plane;
    float* d = dx + i * in_plane;
    for (int oh = 0; oh < p.OH; ++oh) {
      const Tap& a = th[oh];
      float* d0 = d + static_cast<int64_t>(a.i0) * p.W;
      float* d1 = d + static_cast<int64_t>(a.i1) * p.W;
      for (int ow = 0; ow < p.OW; ++ow) {
        const Tap& b = tw[ow];
        const float v = g[static_cast<int64_t>(oh) * p.OW + ow];
        d0[b.i0] += a.l0 * b.l0 * v;
        d0[b.i1] += a.l0 * b.l1 * v;
        d1[b.i0] += a.l1 * b.l0 * v;
        d1[b.i1] += a.l1 * b.l1 * v;
      }
    }
  }
}

void resize_gather_u8_cpu(const ResizeParams& p, int count, const uint8_t* images,
                          const int32_t* index, float* y) {
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.OH) * p.OW;
  // ToTensor divides by 255 (a division, not a multiply by 1/255: the
  // roundings differ for some bytes).
  constexpr float kByteMax = 255.0f;
  if (p.OH == p.H && p.OW == p.W) {  // gather and scale only
#pragma omp parallel for schedule(static)
    for (int b = 0; b < p.N; ++b) {
      float* dst = y + b * out_plane;
      if (index[b] < 0 || index[b] >= count) {
        for (int64_t j = 0; j < out_plane; ++j) dst[j] = NAN;
        continue;
      }
      const uint8_t* src = images + index[b] * in_plane;
      for (int64_t j = 0; j < in_plane; ++j) dst[j] = static_cast<float>(src[j]) / kByteMax;
    }
    return;
  }
  const auto th = taps(p.H, p.OH), tw = taps(p.W, p.OW);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < p.N; ++b) {
    float* dst = y + b * out_plane;
    if (index[b] < 0 || index[b] >= count) {
      for (int64_t j = 0; j < out_plane; ++j) dst[j] = NAN;
      continue;
    }
    resize_plane(p, th, tw, images + index[b] * in_plane, kByteMax, dst);
  }
}

}  // namespace scratchnet::kernels
