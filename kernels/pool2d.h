// Max and average pooling, NCHW, PyTorch semantics (ceil_mode=False):
//   x (N, C, H, W) -> y (N, C, P, Q), P = (H + 2*pad - R) / stride + 1
// Max pool pads with -inf and records, per output, the flat index (h*W + w)
// of the winner inside its (n, c) plane; backward routes dy there (first
// maximum wins on ties, as PyTorch). Average pool counts padding
// (count_include_pad=True): each window divides by R*S.
// Global average pool: (N, C, H, W) -> (N, C, 1, 1).
// Backward functions accumulate (+=) into dx; with a write flag (dx
// uninitialised, see core/autograd.h) they set every dx element instead, 0
// where no window covers it.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct Pool2dParams {
  int N, C, H, W;
  int R, S;  // window
  int stride, pad;
  int P, Q;
};

// op is "max_pool2d" or "avg_pool2d" (used in messages). Throws ShapeError.
Pool2dParams pool2d_params(const char* op, int N, int C, int H, int W, int R, int S, int stride,
                           int pad);

void max_pool2d_forward_cpu(const Pool2dParams& p, const float* x, float* y, int32_t* argmax);
void max_pool2d_backward_cpu(const Pool2dParams& p, const float* dy, const int32_t* argmax,
                             float* dx);
void avg_pool2d_forward_cpu(const Pool2dParams& p, const float* x, float* y);
void avg_pool2d_backward_cpu(const Pool2dParams& p, const float* dy, float* dx,
                             bool write = false);
// Every window clipped and indexed on its own: the tests' oracles for the
// fast paths above (max: windows inside the input in vectorised runs; avg:
// windows that tile the input, R = S = stride, pad 0).
void max_pool2d_forward_cpu_plain(const Pool2dParams& p, const float* x, float* y,
                                  int32_t* argmax);
void avg_pool2d_forward_cpu_plain(const Pool2dParams& p, const float* x, float* y);
void avg_pool2d_backward_cpu_plain(const Pool2dParams& p, const float* dy, float* dx,
                                   bool write = false);
// planes = N*C, each of size hw; y has one value per plane.
void global_avg_pool_forward_cpu(int planes, int hw, const float* x, float* y);
void global_avg_pool_backward_cpu(int planes, int hw, const float* dy, float* dx,
                                  bool write = false);

#ifdef SCRATCHNET_WITH_CUDA
void max_pool2d_forward_cuda(const Pool2dParams& p, const float* x, float* y, int32_t* argmax,
                             Stream stream);
// write_dx: dx = ... instead of += (dx uninitialised; see core/autograd.h).
void max_pool2d_backward_cuda(const Pool2dParams& p, const float* dy, const int32_t* argmax,
                              float* dx, Stream stream, bool write_dx = false);
void avg_pool2d_forward_cuda(const Pool2dParams& p, const float* x, float* y, Stream stream);
void avg_pool2d_backward_cuda(const Pool2dParams& p, const float* dy, float* dx, Stream stream,
                              bool write = false);
void global_avg_pool_forward_cuda(int planes, int hw, const float* x, float* y, Stream stream);
void global_avg_pool_backward_cuda(int planes, int hw, const float* dy, float* dx, Stream stream,
                                   bool write = false);
#endif

}  // namespace scratchnet::kernels
