// SGD update with torch.optim.SGD's formulas (dampening 0), over n floats:
//   g = grad + weight_decay * param
//   if momentum != 0:
//     buf = first_step ? g : momentum * buf + g
//     g = nesterov ? g + momentum * buf : buf
//   param -= lr * g
// One call covers every parameter when they live in one slab.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct SgdParams {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = true;  // momentum buffer starts as a copy of the first g
};

void sgd_step_cpu(int64_t n, const SgdParams& p, float* param, const float* grad, float* buf);

#ifdef SCRATCHNET_WITH_CUDA
void sgd_step_cuda(int64_t n, const SgdParams& p, float* param, const float* grad, float* buf,
                   Stream stream);
#endif

}  // namespace scratchnet::kernels
