// SGD update with torch.optim.SGD's formulas (dampening 0), over n floats:
//   g = grad + weight_decay * param
//   if momentum != 0:
//     buf = first_step ? g : momentum * buf + g
//     g = nesterov ? g + momentum * buf : buf
//   param -= lr * g
// One call covers every parameter when they live in one slab.
// lr_device (CUDA only, may be nullptr): the kernel reads lr from this device
// float when it runs instead of taking p.lr; a step captured into a CUDA graph
// (train/step_graph.h) uses it so that a replay runs at the rate the host
// stored there (Tensor::fill_) before it (learning-rate schedules replay too).
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct SgdParams {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = true;            // momentum buffer starts as a copy of the first g
  const float* lr_device = nullptr;  // CUDA: when set, lr is *lr_device (see above)
};

void sgd_step_cpu(int64_t n, const SgdParams& p, float* param, const float* grad, float* buf);

#ifdef SCRATCHNET_WITH_CUDA
void sgd_step_cuda(int64_t n, const SgdParams& p, float* param, const float* grad, float* buf,
                   Stream stream);
#endif

}  // namespace scratchnet::kernels
