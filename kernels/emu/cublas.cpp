// The emulated cuBLAS (see include/cublas_v2.h): SGEMM on the CPU GEMM.
// cuBLAS is column-major: a column-major X with leading dimension L is the
// row-major Xᵀ with row stride L, so C = op(A) op(B) (column-major) is
// Cᵀ = op(B)ᵀ op(A)ᵀ in row-major terms: our gemm_cpu with the operands
// swapped, M and N swapped, and the same transpose flags.
#include <cublas_v2.h>

#include <algorithm>

#include "kernels/emu/internal.h"
#include "kernels/gemm.h"

struct cublasContext {
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cudaStream_t stream = nullptr;  // cublasSetStream: a capturing one records the GEMMs
};

namespace {

cublasStatus_t sgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                     int k, const float* alpha, const float* A, int lda, long long sa,
                     const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                     long long sc, int batch) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool op_ok =
      (ta == CUBLAS_OP_N || ta == CUBLAS_OP_T) && (tb == CUBLAS_OP_N || tb == CUBLAS_OP_T);
  const int a_rows = ta == CUBLAS_OP_N ? m : k, b_rows = tb == CUBLAS_OP_N ? k : n;
  if (!op_ok || m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, a_rows) ||
      ldb < std::max(1, b_rows) || ldc < std::max(1, m) || alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (sn_emu::sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  scratchnet::kernels::GemmParams p;
  p.trans_a = tb == CUBLAS_OP_T;
  p.trans_b = ta == CUBLAS_OP_T;
  p.M = n;
  p.N = m;
  p.K = k;
  p.lda = ldb;
  p.ldb = lda;
  p.ldc = ldc;
  p.alpha = *alpha;  // host pointer mode: read at the call, also when captured
  p.beta = *beta;
  auto run = [p, A, B, C, sa, sb, sc, batch]() {
    try {
      for (int i = 0; i < batch; ++i)
        scratchnet::kernels::gemm_cpu(p, B + i * sb, A + i * sa, C + i * sc);
    } catch (const std::exception&) {
      return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
  };
  if (sn_emu::capturing(h->stream)) {
    const cudaError_t e = sn_emu::record(h->stream, "cublasSgemm", [run] {
      if (sn_emu::sticky() != cudaSuccess) return sn_emu::fail(sn_emu::sticky());
      return run() == CUBLAS_STATUS_SUCCESS
                 ? cudaSuccess
                 : sn_emu::fail_sticky(cudaErrorLaunchFailure, "cublasSgemm failed in a graph");
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return run();
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

// TF32 is accepted and ignored: the emulation is always strict FP32.
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
  }
  return "unknown status";
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  return sgemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta,
                                         float* C, int ldc, long long sc, int batch) {
  return sgemm(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
