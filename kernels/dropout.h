// Inverted dropout: in training, element i is kept when
// philox_uniform(seed, offset, i) < 1 - p and then scaled by 1 / (1 - p);
// dropped elements are 0. The mask is never stored: backward recomputes it
// from (seed, offset), so CPU and CUDA agree bit for bit. p in [0, 1).
// Backward accumulates: dx += dy * mask / (1 - p).
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

void dropout_forward_cpu(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                         float* y);
void dropout_backward_cpu(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                          float* dx);

#ifdef SCRATCHNET_WITH_CUDA
void dropout_forward_cuda(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                          float* y, Stream stream);
void dropout_backward_cuda(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                           float* dx, Stream stream);
#endif

}  // namespace scratchnet::kernels
