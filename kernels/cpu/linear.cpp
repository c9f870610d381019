// Fully connected layer on the CPU, as torch.nn.Linear: three GEMMs.
//   x (N, IN), w (OUT, IN) (PyTorch's layout), b (OUT) optional, y (N, OUT)
//   forward          y  = x wᵀ + b        gemm(N x IN, (OUT x IN)ᵀ)
//   backward data    dx += dy w           gemm(N x OUT, OUT x IN), beta 1
//   backward weight  dw += dyᵀ x          gemm((N x OUT)ᵀ, N x IN), beta 1
//                    db += Σ_n dy
// The transposes are folded into gemm_cpu's packing, so nothing is copied
// here; gemm_cpu brings the blocking and the threads.
#include "kernels/linear.h"

#include "kernels/gemm.h"

namespace scratchnet::kernels {

void linear_forward_cpu(const LinearParams& p, const float* x, const float* w, const float* b,
                        float* y) {
  gemm_cpu(gemm_params(false, true, p.N, p.OUT, p.IN), x, w, y);
  if (b) {
    for (int n = 0; n < p.N; ++n)
      for (int o = 0; o < p.OUT; ++o) y[static_cast<long>(n) * p.OUT + o] += b[o];
  }
}

void linear_backward_data_cpu(const LinearParams& p, const float* dy, const float* w, float* dx) {
  gemm_cpu(gemm_params(false, false, p.N, p.IN, p.OUT, 1.0f, 1.0f), dy, w, dx);
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
