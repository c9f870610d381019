// Single-precision GEMM, row-major: C = alpha * op(A) * op(B) + beta * C,
// op(X) = X or Xᵀ. M x K times K x N into M x N; lda/ldb/ldc are the row
// strides of A, B and C as stored. The CPU version is a cache-blocked,
// OpenMP-parallel GEMM used by conv2d (im2col) and linear; the CUDA version
// is a hand-written kernel tiled in shared memory and registers. The cuBLAS
// path exists only as a baseline and is chosen at run time with
// SCRATCHNET_GEMM=cublas (never the default).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "kernels/common.h"

namespace scratchnet::kernels {

// op(B) that is not stored but written on demand, straight into the CPU
// GEMM's packed layout (conv2d's implicit im2col: the columns matrix is never
// built whole). pack(ctx, k0, kc, j0, nc, nr, dst) writes rows [k0, k0+kc)
// and columns [j0, j0+nc) of op(B) as ceil(nc/nr) micro-panels of kc x nr
// floats, one after another, each row by row; columns past nc are zeros. It
// may be called from several threads at once, with different dst.
struct GemmBSource {
  void (*pack)(const void* ctx, int k0, int kc, int j0, int nc, int nr, float* dst) = nullptr;
  const void* ctx = nullptr;
};

struct GemmParams {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  int lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
  // CPU only (the CUDA GEMM rejects it): op(B) from this source instead of the B
  // pointer, which is then unused (pass nullptr; trans_b and ldb are ignored).
  const GemmBSource* b_source = nullptr;
};

// Row-major params for C[M,N] = op(A) op(B): fills in the leading dimensions
// of tightly packed matrices.
GemmParams gemm_params(bool trans_a, bool trans_b, int M, int N, int K, float alpha = 1.0f,
                       float beta = 0.0f);

void gemm_cpu(const GemmParams& p, const float* A, const float* B, float* C);

// op(A) packed once for several GEMMs that share it (conv2d's weights over
// the images of a batch). gemm_cpu_pack_a writes op(A) of p's shape (M, K,
// trans_a, lda; B, N and C do not matter) into `packed`, which holds
// gemm_cpu_packed_a_floats(p) floats; gemm_cpu_prepacked_a then computes
// C = alpha op(A) op(B) + beta C for any N, ldb, ldc, alpha, beta with the
// same M, K and variant, bit for bit as gemm_cpu. variant "" is gemm_cpu's.
std::size_t gemm_cpu_packed_a_floats(const GemmParams& p, const std::string& variant = "");
void gemm_cpu_pack_a(const GemmParams& p, const float* A, float* packed,
                     const std::string& variant = "");
void gemm_cpu_prepacked_a(const GemmParams& p, const float* packed, const float* B, float* C,
                          const std::string& variant = "");

// The CPU GEMM's micro-kernel exists in several instruction-set variants,
// chosen at run time (kernels/cpu/gemm_variants.h): "avx512", "avx2" and
// "generic" (4-wide SSE/NEON vectors). These are the ones this CPU can run,
// widest first.
std::vector<std::string> gemm_cpu_variants();
// The variant gemm_cpu uses: the widest this CPU runs, or the one named by
// the environment variable SCRATCHNET_CPU_ISA (read once; a name this binary
// lacks or this CPU cannot run throws ValueError).
std::string gemm_cpu_variant();
// gemm_cpu with a given variant: for tests, which run every variant against
// the reference, and for the bench.
void gemm_cpu_with(const std::string& variant, const GemmParams& p, const float* A, const float* B,
                   float* C);
// The FP32 peak of one core for a variant's instruction set, from a loop of
// independent FMAs: runs `iters` rounds on the calling thread and returns the
// flops done (the caller times it).
double cpu_fma_loop(const std::string& variant, int64_t iters);

#ifdef SCRATCHNET_WITH_CUDA
void gemm_cuda(const GemmParams& p, const float* A, const float* B, float* C, Stream stream);
// C = act(alpha op(A) op(B) + beta C + bias) for one GEMM: bias (N) per
// output column or null, act = ReLU when `relu`, applied as C is stored.
// Skinny GEMMs (few output tiles, long K) split K (kernels/cuda/split_k.h),
// their partial products in `workspace`, gemm_cuda_workspace_bytes(p) bytes
// (0 when no split: workspace may then be null). Deterministic.
std::size_t gemm_cuda_workspace_bytes(const GemmParams& p);
void gemm_cuda_ex(const GemmParams& p, const float* A, const float* B, float* C, const float* bias,
                  bool relu, void* workspace, Stream stream);
// Tests only: force gemm_cuda_ex's split-K slice count (1: no split; 0: the rule).
void gemm_cuda_force_split_for_testing(int split);
void gemm_cublas(const GemmParams& p, const float* A, const float* B, float* C, Stream stream,
                 bool allow_tf32 = false);
// true when SCRATCHNET_GEMM=cublas is set: the engine's GEMMs go to cuBLAS.
bool gemm_use_cublas();
#endif

}  // namespace scratchnet::kernels
