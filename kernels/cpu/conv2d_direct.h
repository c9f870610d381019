// The conv2d weight gradient computed directly, without im2col and GEMM
// (kernels/cpu/conv2d_direct.cpp), for the shapes where that is faster;
// kernels/cpu/conv2d.cpp decides and threads it.
#pragma once
#include "kernels/conv2d.h"

namespace scratchnet::kernels {

enum class ConvPass { kForward, kData, kWeight };
// Shapes the direct kernels can do: stride 1, square filters 3 or 5 wide,
// pad < R.
bool conv2d_direct_applies(const Conv2dParams& p);
// Whether the direct kernel is the faster one for this shape and pass.
bool conv2d_direct_pays(const Conv2dParams& p, ConvPass pass);
// dw (K, C, R, S) += the weight gradient of images [n0, n0 + g) (no bias).
void conv2d_weight_direct(const Conv2dParams& p, const float* x, const float* dy, int n0, int g,
                          float* dw);

// The forward and the data gradient as stride-1 correlations over each image
// (the data gradient: dy padded by R - 1 - pad, flipped filters), threads
// over the images.
void conv2d_forward_direct(const Conv2dParams& p, const float* x, const float* w, const float* b,
                           float* y);
void conv2d_backward_data_direct(const Conv2dParams& p, const float* dy, const float* w,
                                 float* dx);

}  // namespace scratchnet::kernels
