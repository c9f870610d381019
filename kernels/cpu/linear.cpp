// Fully connected layer on the CPU, as torch.nn.Linear: three GEMMs.
//   x (N, IN), w (OUT, IN) (PyTorch's layout), b (OUT) optional, y (N, OUT)
//   forward          y  = x wᵀ + b        gemm(N x IN, (OUT x IN)ᵀ)
//   backward data    dx += dy w           gemm(N x OUT, OUT x IN), beta 1
//                    (write_dx: dx = dy w, beta 0)
//   backward weight  dw += dyᵀ x          gemm((N x OUT)ᵀ, N x IN), beta 1
//                    db += Σ_n dy
// The transposes are folded into gemm_cpu's packing, so nothing is copied
// here; gemm_cpu brings the blocking and the threads.
#include "kernels/linear.h"

#include <vector>

#include "kernels/gemm.h"

namespace scratchnet::kernels {

void linear_forward_cpu_plain(const LinearParams& p, const float* x, const float* w,
                              const float* b, float* y) {
  gemm_cpu(gemm_params(false, true, p.N, p.OUT, p.IN), x, w, y);
  if (b) {
    for (int n = 0; n < p.N; ++n)
      for (int o = 0; o < p.OUT; ++o) y[static_cast<long>(n) * p.OUT + o] += b[o];
  }
}

// A small batch against a big layer (AlexNet's 32 x 9600 -> 4096): in the
// plain form w is op(B) transposed, and the GEMM's transposing pack of all
// of w (157 MB, 32 rows 38 KB apart at a time) fed only three 12-row panels
// of x: 11 GFLOP/s. Computed as yᵀ = w xᵀ instead, w is op(A) untransposed,
// packed from 12 sequential row streams, and x is the small transposed
// operand; yᵀ goes to scratch and is transposed into y with the bias. Each
// y[n][o] is still the sum over k of x[n][k] w[o][k], by the same FMAs in
// the same order and the same depth slices, so the bits do not change.
void linear_forward_cpu(const LinearParams& p, const float* x, const float* w, const float* b,
                        float* y) {
  if (p.N > 64 || p.OUT < 4 * p.N) {
    linear_forward_cpu_plain(p, x, w, b, y);
    return;
  }
  thread_local std::vector<float> yt;
  const std::size_t size = static_cast<std::size_t>(p.OUT) * p.N;
  if (yt.size() < size) yt.resize(size);
  gemm_cpu(gemm_params(false, true, p.OUT, p.N, p.IN), w, x, yt.data());
  const int N = p.N, OUT = p.OUT;
  for (int n = 0; n < N; ++n) {
    float* __restrict row = y + static_cast<long>(n) * OUT;
    const float* __restrict col = yt.data() + n;
    if (b)
      for (int o = 0; o < OUT; ++o) row[o] = col[static_cast<long>(o) * N] + b[o];
    else
      for (int o = 0; o < OUT; ++o) row[o] = col[static_cast<long>(o) * N];
  }
}

void linear_backward_data_cpu(const LinearParams& p, const float* dy, const float* w, float* dx,
                              bool write_dx) {
  gemm_cpu(gemm_params(false, false, p.N, p.IN, p.OUT, 1.0f, write_dx ? 0.0f : 1.0f), dy, w, dx);
}

void linear_backward_weight_cpu(const LinearParams& p, const float* x, const float* dy, float* dw,
                                float* db) {
  gemm_cpu(gemm_params(true, false, p.OUT, p.IN, p.N, 1.0f, 1.0f), dy, x, dw);
  if (db) {  // row after row of dy: the inner loop is contiguous
    for (int n = 0; n < p.N; ++n)
      for (int o = 0; o < p.OUT; ++o) db[o] += dy[static_cast<long>(n) * p.OUT + o];
  }
}

}  // namespace scratchnet::kernels
