// CPU SGD step with torch.optim.SGD's formulas (dampening 0), see sgd.h.
// Elementwise over n floats: split across threads, same result on any count.
// buf is only touched when momentum != 0 (the op layer may pass nullptr).
#include "kernels/sgd.h"

namespace scratchnet::kernels {

void sgd_step_cpu(int64_t n, const SgdParams& p, float* param, const float* grad, float* buf) {
  const float lr = p.lr, mu = p.momentum, wd = p.weight_decay;
  if (mu == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 15))
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    return;
  }
  const bool first = p.first_step, nesterov = p.nesterov;
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + wd * param[i];
    const float b = first ? g : mu * buf[i] + g;
    buf[i] = b;
    param[i] -= lr * (nesterov ? g + mu * b : b);
  }
}

}  // namespace scratchnet::kernels
