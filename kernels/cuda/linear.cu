// Fully connected layer on the GPU, as torch.nn.Linear: y = x Wᵀ + b.
//   x (N, IN), w (OUT, IN), b (OUT), y (N, OUT)
// Every product goes through the engine's GEMM (gemm_cuda, or cuBLAS with
// SCRATCHNET_GEMM=cublas):
//   forward:  y = act(x Wᵀ + b), one GEMM whose epilogue adds the bias and
//             applies the ReLU when asked (linear_relu); skinny shapes (VGG's
//             FC layers at batch 128) split K through the workspace
//             (gemm_cuda_ex, kernels/cuda/split_k.h)
//   backward: dx += dy W (write_dx: beta 0, dx = dy W);  dw += dyᵀ x;
//             db += column sums of dy, reduced in a fixed order
//             (deterministic, no atomics).
// Split-K at the course's shapes (split_k.h: slices = min(264 / tiles,
// K / 512, ...)): forward VGG-11 FC1/FC2 at batch 128 8 slices (32 -> 256
// blocks), AlexNet FC1/FC2 at 256 4 slices (64 -> 256), the 10-class heads 8
// (1-2 tiles); LeNet's K (<= 400) never splits. The data gradient (K = OUT)
// splits at VGG FC2 (128 x 4096, K 4096: 32 tiles -> 8 slices) and AlexNet
// FC2 (64 tiles -> 4); FC1's dx has 196 / 144 tiles and the heads' K is 10,
// so those do not. Its second pass adds the slices in ascending order, then
// applies beta (0 with write_dx, 1 accumulating onto dx) as the unsplit GEMM
// would. Forward and data gradient share one workspace size,
// linear_workspace_bytes_cuda (the larger of the two). The weight gradient's K
// is the batch (<= 256 < 2 * 512): never qualifies, no workspace.
#include <algorithm>

#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/linear.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

// db[c] += Σ_r dy[r][c]. Block (32, 8): 32 columns, 8 row lanes that each sum
// a strided subset of the rows; the 8 partials are then added in order.
__global__ void column_sum_kernel(int rows, int cols, const float* __restrict__ dy,
                                  float* __restrict__ db) {
  __shared__ float part[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < cols)
    for (int r = threadIdx.y; r < rows; r += 8) s += dy[static_cast<int64_t>(r) * cols + c];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float t = 0.0f;
    for (int j = 0; j < 8; ++j) t += part[j][threadIdx.x];
    db[c] += t;
  }
}

void gemm(const GemmParams& g, const float* A, const float* B, float* C, Stream stream) {
  gemm_batched(g, A, 0, B, 0, C, 0, 1, stream);
}

GemmParams forward_gemm(const LinearParams& p) {
  return gemm_params(false, true, p.N, p.OUT, p.IN);
}

// dx (N, IN) = dy (N, OUT) W (OUT, IN) + beta dx: beta 0 writes, 1 accumulates.
GemmParams data_gemm(const LinearParams& p, bool write_dx) {
  return gemm_params(false, false, p.N, p.IN, p.OUT, 1.0f, write_dx ? 0.0f : 1.0f);
}

}  // namespace

std::size_t linear_workspace_bytes_cuda(const LinearParams& p) {
  // The split plan depends on the shape only, not on beta.
  return std::max(gemm_cuda_workspace_bytes(forward_gemm(p)),
                  gemm_cuda_workspace_bytes(data_gemm(p, true)));
}

void linear_forward_cuda(const LinearParams& p, const float* x, const float* w, const float* b,
                         float* y, void* workspace, Stream stream, bool relu) {
  gemm_cuda_ex(forward_gemm(p), x, w, y, b, relu, workspace, stream);
}

void linear_backward_data_cuda(const LinearParams& p, const float* dy, const float* w, float* dx,
                               void* workspace, Stream stream, bool write_dx) {
  gemm_cuda_ex(data_gemm(p, write_dx), dy, w, dx, nullptr, false, workspace, stream);
}

void linear_backward_weight_cuda(const LinearParams& p, const float* x, const float* dy, float* dw,
                                 float* db, Stream stream) {
  gemm(gemm_params(true, false, p.OUT, p.IN, p.N, 1.0f, 1.0f), dy, x, dw, stream);
  if (db != nullptr) {
    const unsigned blocks = static_cast<unsigned>((p.OUT + 31) / 32);
    SN_LAUNCH("column_sum_kernel", column_sum_kernel, blocks, dim3(32, 8), 0, stream, p.N, p.OUT,
              dy, db);
  }
}

}  // namespace scratchnet::kernels
