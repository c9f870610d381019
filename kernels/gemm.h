// Single-precision GEMM, row-major: C = alpha * op(A) * op(B) + beta * C,
// op(X) = X or Xᵀ. M x K times K x N into M x N; lda/ldb/ldc are the row
// strides of A, B and C as stored. The CPU version is a cache-blocked,
// OpenMP-parallel GEMM used by conv2d (im2col) and linear; the CUDA version
// is a hand-written kernel tiled in shared memory and registers. The cuBLAS
// path exists only as a baseline and is chosen at run time with
// SCRATCHNET_GEMM=cublas (never the default).
#pragma once
#include "kernels/common.h"

namespace scratchnet::kernels {

struct GemmParams {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  int lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
};

// Row-major params for C[M,N] = op(A) op(B): fills in the leading dimensions
// of tightly packed matrices.
GemmParams gemm_params(bool trans_a, bool trans_b, int M, int N, int K, float alpha = 1.0f,
                       float beta = 0.0f);

void gemm_cpu(const GemmParams& p, const float* A, const float* B, float* C);

#ifdef SCRATCHNET_WITH_CUDA
void gemm_cuda(const GemmParams& p, const float* A, const float* B, float* C, Stream stream);
void gemm_cublas(const GemmParams& p, const float* A, const float* B, float* C, Stream stream,
                 bool allow_tf32 = false);
// true when SCRATCHNET_GEMM=cublas is set: the engine's GEMMs go to cuBLAS.
bool gemm_use_cublas();
#endif

}  // namespace scratchnet::kernels
