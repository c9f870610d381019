// SGD update on the GPU (torch.optim.SGD, dampening 0; see sgd.h): one
// elementwise kernel over the parameter slab, the CPU reference's formulas;
// the rate from p.lr or, for a graph-captured step, from *p.lr_device.
#include "kernels/cuda/launch.cuh"
#include "kernels/sgd.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

__global__ void sgd_kernel(int64_t n, SgdParams p, float* __restrict__ param,
                           const float* __restrict__ grad, float* __restrict__ buf) {
  const float lr = p.lr_device ? *p.lr_device : p.lr;
  const float mu = p.momentum, wd = p.weight_decay;
  for (int64_t i = global_tid(); i < n; i += grid_stride()) {
    const float g = grad[i] + wd * param[i];
    if (mu == 0.0f) {
      param[i] -= lr * g;
      continue;
    }
    const float b = p.first_step ? g : mu * buf[i] + g;
    buf[i] = b;
    param[i] -= lr * (p.nesterov ? g + mu * b : b);
  }
}

}  // namespace

void sgd_step_cuda(int64_t n, const SgdParams& p, float* param, const float* grad, float* buf,
                   Stream stream) {
  if (n <= 0) return;
  SN_LAUNCH("sgd_kernel", sgd_kernel, grid_for(n), kThreads, 0, stream, n, p, param, grad, buf);
}

}  // namespace scratchnet::kernels
