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
// Tests only: the CPU kernels' path. 0: their choice. 1: always im2col +
// GEMM with the columns matrix built whole (no implicit im2col, data
// gradient by col2im). 2: the direct kernels wherever they apply
// (kernels/cpu/conv2d_direct.h). 3: no direct kernels; the data gradient as
// a forward convolution of dy with the flipped filters wherever that applies
// (stride 1, R == S, pad < R), stride-1 columns implicit. 4: as 0 without
// the direct kernels, and the tap GEMMs (no products with the padding)
// wherever they apply, whatever the padding share.
// Not thread-safe; set it between calls.
void conv2d_cpu_path_for_testing(int path);

#ifdef SCRATCHNET_WITH_CUDA
// CUDA: implicit-GEMM kernels (kernels/cuda/conv2d.cu).
// Scratch memory the CUDA launchers need (0 if none; today only the weight
// gradient's split-K partial products); the caller provides it.
std::size_t conv2d_workspace_bytes_cuda(const Conv2dParams& p);
// y = conv(x, w) + b, then max(y, 0) when relu (fused in the GEMM epilogue).
void conv2d_forward_cuda(const Conv2dParams& p, const float* x, const float* w, const float* b,
                         float* y, void* workspace, Stream stream, bool relu = false);
// write_dx: dx = the data gradient (dx uninitialised; see core/autograd.h),
// else dx += it. The CPU kernel always accumulates.
void conv2d_backward_data_cuda(const Conv2dParams& p, const float* dy, const float* w, float* dx,
                               void* workspace, Stream stream, bool write_dx = false);
void conv2d_backward_weight_cuda(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                 float* db, void* workspace, Stream stream);

// What the CUDA launchers choose for a shape (tests and the bench report it).
struct Conv2dTile {
  int bm, bn;  // block tile: channels x GEMM columns
};
struct Conv2dCudaPlan {
  Conv2dTile forward, backward_data, backward_weight;
  int weight_split;  // split-K slices of the weight gradient (1: none)
  std::size_t workspace_bytes;
};
Conv2dCudaPlan conv2d_cuda_plan(const Conv2dParams& p);
// Tests only: every launch uses tile bm x bn (64 or 128 each; 0, 0: the
// rule). Set it before sizing the workspace (the split-K plan depends on it).
void conv2d_cuda_force_tile_for_testing(int bm, int bn);
#endif

}  // namespace scratchnet::kernels
