// Fully connected layer, as torch.nn.Linear: y = x Wᵀ + b.
//   x (N, IN), w (OUT, IN), b (OUT) optional, y (N, OUT)
// Backward accumulates: dx += dy W, dw += dyᵀ x, db += Σ_n dy; with write_dx,
// dx = dy W (dx uninitialised: GEMM beta 0; see core/autograd.h).
#pragma once
#include <cstddef>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct LinearParams {
  int N, IN, OUT;
};

LinearParams linear_params(int N, int IN, int OUT);  // throws ShapeError naming "linear"

void linear_forward_cpu(const LinearParams& p, const float* x, const float* w, const float* b,
                        float* y);
// The forward as one plain GEMM, y = x wᵀ + b, whatever the shapes: the
// reference that linear_forward_cpu's transposed form for small batches is
// tested against (bit for bit: the same products summed in the same order).
void linear_forward_cpu_plain(const LinearParams& p, const float* x, const float* w,
                              const float* b, float* y);
void linear_backward_data_cpu(const LinearParams& p, const float* dy, const float* w, float* dx,
                              bool write_dx = false);
void linear_backward_weight_cpu(const LinearParams& p, const float* x, const float* dy, float* dw,
                                float* db);

#ifdef SCRATCHNET_WITH_CUDA
// Workspace the forward and the data gradient need: their split-K partials,
// the larger of the two (0 when neither splits K). One buffer of this size
// serves either call.
std::size_t linear_workspace_bytes_cuda(const LinearParams& p);
// relu: y = max(x wᵀ + b, 0), the ReLU in the GEMM's epilogue (linear_relu).
void linear_forward_cuda(const LinearParams& p, const float* x, const float* w, const float* b,
                         float* y, void* workspace, Stream stream, bool relu = false);
void linear_backward_data_cuda(const LinearParams& p, const float* dy, const float* w, float* dx,
                               void* workspace, Stream stream, bool write_dx = false);
void linear_backward_weight_cuda(const LinearParams& p, const float* x, const float* dy, float* dw,
                                 float* db, Stream stream);
#endif

}  // namespace scratchnet::kernels
