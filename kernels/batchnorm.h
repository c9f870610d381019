// Batch normalisation over channels, PyTorch semantics.
//   x, y (N, C, HW): HW = H*W for BatchNorm2d, 1 for BatchNorm1d on (N, F).
//   Training: per channel c, mean and biased variance over N*HW values;
//     y = (x - mean) * invstd * gamma + beta, invstd = 1 / sqrt(var + eps);
//     running_mean = (1 - momentum) * running_mean + momentum * mean,
//     running_var  = (1 - momentum) * running_var  + momentum * var_unbiased.
//     save_mean / save_invstd (C) keep what backward needs.
//   Eval: the same affine map with the running statistics.
// Backward (training statistics) accumulates into dx, dgamma, dbeta:
//   xhat = (x - mean) * invstd, m = N*HW
//   dbeta += Σ dy, dgamma += Σ dy * xhat,
//   dx += gamma * invstd * (dy - Σdy / m - xhat * Σ(dy * xhat) / m)
// Backward in eval mode (statistics are constants): pass the running
// statistics as save_mean / save_invstd-from-running-var and training=false:
//   dx += gamma * invstd * dy.
// write_dx: dx = ... instead of += (dx uninitialised; see core/autograd.h);
// dgamma and dbeta (parameters' gradients) always accumulate.
// Fused ReLU (p.relu): forward writes y = max(BN(x), 0); backward takes that
// y and uses g = (y > 0 ? dy : 0) in place of dy above, so BN + ReLU needs
// neither a separate ReLU pass nor a buffer for the gradient between them.
// y is read only when p.relu (pass nullptr otherwise).
#pragma once
#include <cstddef>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct BatchNormParams {
  int N, C, HW;
  float eps = 1e-5f;
  float momentum = 0.1f;
  bool relu = false;  // fused ReLU on the output (see above)
};

BatchNormParams batch_norm_params(int N, int C, int HW, float eps, float momentum);

void batch_norm_forward_train_cpu(const BatchNormParams& p, const float* x, const float* gamma,
                                  const float* beta, float* y, float* save_mean, float* save_invstd,
                                  float* running_mean, float* running_var);
void batch_norm_forward_eval_cpu(const BatchNormParams& p, const float* x, const float* gamma,
                                 const float* beta, const float* running_mean,
                                 const float* running_var, float* y);
// invstd_from_running: save_mean/save_invstd hold running mean and 1/sqrt(rv+eps).
void batch_norm_backward_cpu(const BatchNormParams& p, bool training, const float* x,
                             const float* y, const float* dy, const float* gamma,
                             const float* save_mean, const float* save_invstd, float* dx,
                             float* dgamma, float* dbeta, bool write_dx = false);
// Eval-mode backward needs invstd of the running variance: computed here.
void batch_norm_invstd_cpu(int C, float eps, const float* var, float* invstd);

#ifdef SCRATCHNET_WITH_CUDA
std::size_t batch_norm_workspace_bytes_cuda(const BatchNormParams& p);
void batch_norm_forward_train_cuda(const BatchNormParams& p, const float* x, const float* gamma,
                                   const float* beta, float* y, float* save_mean,
                                   float* save_invstd, float* running_mean, float* running_var,
                                   void* workspace, Stream stream);
void batch_norm_forward_eval_cuda(const BatchNormParams& p, const float* x, const float* gamma,
                                  const float* beta, const float* running_mean,
                                  const float* running_var, float* y, Stream stream);
void batch_norm_backward_cuda(const BatchNormParams& p, bool training, const float* x,
                              const float* y, const float* dy, const float* gamma,
                              const float* save_mean, const float* save_invstd, float* dx,
                              float* dgamma, float* dbeta, void* workspace, Stream stream,
                              bool write_dx = false);
void batch_norm_invstd_cuda(int C, float eps, const float* var, float* invstd, Stream stream);
#endif

}  // namespace scratchnet::kernels
