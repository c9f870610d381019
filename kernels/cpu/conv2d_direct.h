// The conv2d weight gradient computed directly, without im2col and GEMM
// (kernels/cpu/conv2d_direct.cpp), for the shapes where that is faster;
// kernels/cpu/conv2d.cpp decides and threads it.
#pragma once
#include "kernels/conv2d.h"

namespace scratchnet::kernels {

// Whether the direct kernel is the faster one for this shape (it can only
// do stride 1 with filters 3 or 5 wide).
bool conv2d_weight_direct_pays(const Conv2dParams& p);
// dw (K, C, R, S) += the weight gradient of images [n0, n0 + g) (no bias).
void conv2d_weight_direct(const Conv2dParams& p, const float* x, const float* dy, int n0, int g,
                          float* dw);

}  // namespace scratchnet::kernels
