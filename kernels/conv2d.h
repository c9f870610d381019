// 2-D convolution (cross-correlation, as PyTorch), NCHW.
//   x (N, C, H, W), w (K, C, R, S), b (K) optional, y (N, K, P, Q)
//   P = (H + 2*pad - R) / stride + 1, Q = (W + 2*pad - S) / stride + 1
// Backward functions accumulate (+=) into dx, dw, db.
#pragma once
#include <cstddef>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct Conv2dParams {
  int N, C, H, W;  // input
  int K, R, S;     // filters: K of C x R x S
  int stride, pad;
  int P, Q;  // output spatial size
};

// Validates and computes the output size; throws ShapeError naming "conv2d".
Conv2dParams conv2d_params(int N, int C, int H, int W, int K, int R, int S, int stride, int pad);

void conv2d_forward_cpu(const Conv2dParams& p, const float* x, const float* w, const float* b,
                        float* y);
void conv2d_backward_data_cpu(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_weight_cpu(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                float* db);
// Tests only: at most `images` images per CPU GEMM group (0: the kernels'
// own choice), so the per-image path and short last groups are reachable
// with small shapes. Not thread-safe; set it between calls.
void conv2d_cpu_cap_group_images_for_testing(int images);

#ifdef SCRATCHNET_WITH_CUDA
// Scratch memory the CUDA launchers need (0 if none); the caller provides it.
std::size_t conv2d_workspace_bytes_cuda(const Conv2dParams& p);
// Tests only: at most `images` images per im2col chunk (0: the budget's
// choice), so that small shapes reach the chunk loop. Set it before sizing
// the workspace.
void conv2d_cuda_cap_chunk_images_for_testing(int images);
void conv2d_forward_cuda(const Conv2dParams& p, const float* x, const float* w, const float* b,
                         float* y, void* workspace, Stream stream);
void conv2d_backward_data_cuda(const Conv2dParams& p, const float* dy, const float* w, float* dx,
                               void* workspace, Stream stream);
void conv2d_backward_weight_cuda(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                 float* db, void* workspace, Stream stream);
#endif

}  // namespace scratchnet::kernels
