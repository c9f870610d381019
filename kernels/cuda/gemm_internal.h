// Internal to kernels/cuda: the strided-batched GEMM every CUDA op routes its
// matrix products through (linear; conv2d has its own implicit-GEMM kernels).
//   for b in [0, batch): C_b = alpha * op(A_b) op(B_b) + beta * C_b,
//   X_b = X + b * stride_x (a stride of 0 shares one matrix across the batch).
// gemm_batched picks the hand-written kernel, or cuBLAS when
// gemm_use_cublas() (SCRATCHNET_GEMM=cublas).
#pragma once
#include <cstdint>

#include "kernels/gemm.h"

namespace scratchnet::kernels::cudadetail {

// Throws ShapeError naming "gemm" when sizes or leading dimensions do not fit.
void check_gemm_params(const GemmParams& p);

void gemm_batched_own(const GemmParams& p, const float* A, int64_t stride_a, const float* B,
                      int64_t stride_b, float* C, int64_t stride_c, int batch, Stream stream);
void gemm_batched_cublas(const GemmParams& p, const float* A, int64_t stride_a, const float* B,
                         int64_t stride_b, float* C, int64_t stride_c, int batch, Stream stream,
                         bool allow_tf32);

inline void gemm_batched(const GemmParams& p, const float* A, int64_t stride_a, const float* B,
                         int64_t stride_b, float* C, int64_t stride_c, int batch, Stream stream) {
  if (gemm_use_cublas())
    gemm_batched_cublas(p, A, stride_a, B, stride_b, C, stride_c, batch, stream, false);
  else
    gemm_batched_own(p, A, stride_a, B, stride_b, C, stride_c, batch, stream);
}

}  // namespace scratchnet::kernels::cudadetail
