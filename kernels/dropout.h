// Inverted dropout: in training, element i is kept when
// philox_uniform(seed, offset, i) < 1 - p and then scaled by 1 / (1 - p);
// dropped elements are 0. The mask is never stored: backward recomputes it
// from (seed, offset), so CPU and CUDA agree bit for bit. p in [0, 1).
// Backward accumulates: dx += dy * mask / (1 - p); with write (dx uninitialised,
// see core/autograd.h) dx = dy * mask / (1 - p), dropped elements 0: the
// forward's map applied to dy.
//
// The CUDA kernels take the stream offset as *offset_base + offset, where
// offset_base (nullptr: 0, the default) points to a uint64 in device memory read
// when the kernel runs. Eager calls pass nullptr and the offset itself; a step
// captured into a CUDA graph (train/step_graph.h) passes the generator's
// device word and the draw's distance from the step's first offset, so each
// replay, after dropout_store_offset_cuda wrote the step's first offset
// there, draws exactly the masks an eager step would.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

void dropout_forward_cpu(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                         float* y);
void dropout_backward_cpu(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                          float* dx, bool write = false);

#ifdef SCRATCHNET_WITH_CUDA
void dropout_forward_cuda(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                          float* y, Stream stream, const uint64_t* offset_base = nullptr);
void dropout_backward_cuda(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                           float* dx, Stream stream, const uint64_t* offset_base = nullptr,
                           bool write = false);
// *dst = value, in stream order (one thread; outside any graph, before a replay).
void dropout_store_offset_cuda(uint64_t* dst, uint64_t value, Stream stream);
#endif

}  // namespace scratchnet::kernels
