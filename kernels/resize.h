// Bilinear resize, as torch.nn.functional.interpolate(mode='bilinear',
// align_corners=False, antialias=False):
//   src = (dst + 0.5) * (in / out) - 0.5, clamped below at 0; the two
//   neighbours are floor(src) and min(floor(src) + 1, in - 1).
//   x (N, C, H, W) -> y (N, C, OH, OW). Backward accumulates into dx.
// resize_gather_u8 is the data pipeline's fused step: for each batch slot b
// it takes image index[b] of a (count, H, W) uint8 array, scales it to [0, 1]
// (as ToTensor: /255) and resizes it into y (B, 1, OH, OW); with OH == H and
// OW == W it only gathers and scales. `count` is the number of images: an
// index outside [0, count) gives NaN pixels, never a read out of bounds (the
// device cannot throw; the op layer validates on the host where it can).
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct ResizeParams {
  int N, C, H, W, OH, OW;
};

ResizeParams resize_params(int N, int C, int H, int W, int OH, int OW);

void resize_bilinear_forward_cpu(const ResizeParams& p, const float* x, float* y);
void resize_bilinear_backward_cpu(const ResizeParams& p, const float* dy, float* dx);
// p.N is the batch size B, p.C must be 1.
void resize_gather_u8_cpu(const ResizeParams& p, int count, const uint8_t* images,
                          const int32_t* index, float* y);

#ifdef SCRATCHNET_WITH_CUDA
void resize_bilinear_forward_cuda(const ResizeParams& p, const float* x, float* y, Stream stream);
void resize_bilinear_backward_cuda(const ResizeParams& p, const float* dy, float* dx,
                                   Stream stream);
void resize_gather_u8_cuda(const ResizeParams& p, int count, const uint8_t* images,
                           const int32_t* index, float* y, Stream stream);
#endif

}  // namespace scratchnet::kernels
