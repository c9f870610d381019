// The cuBLAS baseline for gemm_cuda (chosen with SCRATCHNET_GEMM=cublas, and
// used by the tests and benchmarks as a reference). cuBLAS is column-major;
// a row-major C (M x N, ldc) is the column-major Cᵀ, so we ask cuBLAS for
//   Cᵀ = op(B)ᵀ op(A)ᵀ  with the operands swapped and the same op flags.
// Strict FP32 (CUBLAS_DEFAULT_MATH) unless allow_tf32. One handle, created on
// first use and bound to the caller's stream on every call.
#include <cublas_v2.h>

#include <mutex>
#include <string>

#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/launch.cuh"

namespace scratchnet::kernels {

namespace cudadetail {

namespace {

void check_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string("cuBLAS error in ") + call + " at " + file + ":" +
                    std::to_string(line) + ": " + cublasGetStatusName(st) + " (" +
                    cublasGetStatusString(st) + ")");
}
#define SN_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)

// The handle lives until the process ends; it is deliberately never destroyed,
// because static destructors run after the CUDA runtime may have shut down.
cublasHandle_t handle() {
  static std::once_flag once;
  static cublasHandle_t h = nullptr;
  std::call_once(once, [] { SN_CUBLAS_CHECK(cublasCreate(&h)); });
  return h;
}

}  // namespace

void gemm_batched_cublas(const GemmParams& p, const float* A, int64_t stride_a, const float* B,
                         int64_t stride_b, float* C, int64_t stride_c, int batch, Stream stream,
                         bool allow_tf32) {
  check_gemm_params(p);
  if (p.M == 0 || p.N == 0 || batch <= 0) return;
  cublasHandle_t h = handle();
  SN_CUBLAS_CHECK(cublasSetStream(h, stream));
  SN_CUBLAS_CHECK(
      cublasSetMathMode(h, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  const cublasOperation_t op_a = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  // cuBLAS rejects a leading dimension of 0 even when nothing is read.
  const int lda = std::max(p.lda, 1), ldb = std::max(p.ldb, 1), ldc = std::max(p.ldc, 1);
  if (batch == 1) {
    SN_CUBLAS_CHECK(
        cublasSgemm(h, op_b, op_a, p.N, p.M, p.K, &p.alpha, B, ldb, A, lda, &p.beta, C, ldc));
  } else {
    SN_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_b, op_a, p.N, p.M, p.K, &p.alpha, B, ldb,
                                              stride_b, A, lda, stride_a, &p.beta, C, ldc, stride_c,
                                              batch));
  }
}

}  // namespace cudadetail

void gemm_cublas(const GemmParams& p, const float* A, const float* B, float* C, Stream stream,
                 bool allow_tf32) {
  cudadetail::gemm_batched_cublas(p, A, 0, B, 0, C, 0, 1, stream, allow_tf32);
}

}  // namespace scratchnet::kernels
