// Inverted dropout on the GPU (see dropout.h). The mask is recomputed from
// (seed, offset) with exactly the CPU reference's arithmetic: element i is
// kept when philox_uniform(seed, offset, i) < 1.0f - p, so the two backends
// agree bit for bit. One thread per group of four elements: one Philox call
// yields the four words of elements 4b .. 4b+3. The offset is
// *offset_base + offset when offset_base is set (a graph-captured step).
#include "kernels/cuda/launch.cuh"
#include "kernels/dropout.h"
#include "kernels/philox.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

__global__ void store_offset_kernel(uint64_t* dst, uint64_t value) {
  if (global_tid() == 0) *dst = value;
}

template <bool Backward>
__global__ void dropout_kernel(int64_t n, float p, uint64_t seed,
                               const uint64_t* __restrict__ offset_base, uint64_t offset_delta,
                               const float* __restrict__ in, float* __restrict__ out) {
  const uint64_t offset = (offset_base ? *offset_base : uint64_t{0}) + offset_delta;
  const float keep_below = 1.0f - p;
  const float scale = 1.0f / (1.0f - p);
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = global_tid(); b < blocks; b += grid_stride()) {
    const uint64_t ub = static_cast<uint64_t>(b);
    const Philox4 r =
        philox4x32_10(static_cast<uint32_t>(ub), static_cast<uint32_t>(ub >> 32),
                      static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), seed);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * b + j;
      if (i >= n) break;
      const float u = static_cast<float>(r.v[j] >> 8) * (1.0f / 16777216.0f);
      const bool kept = u < keep_below;
      if (Backward) {
        if (kept) out[i] += __fmul_rn(in[i], scale);
      } else {
        out[i] = kept ? __fmul_rn(in[i], scale) : 0.0f;
      }
    }
  }
}

}  // namespace

void dropout_forward_cuda(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                          float* y, Stream stream, const uint64_t* offset_base) {
  if (n <= 0) return;
  SN_LAUNCH("dropout_kernel<forward>", dropout_kernel<false>, grid_for((n + 3) / 4), kThreads, 0,
            stream, n, p, seed, offset_base, offset, x, y);
}

void dropout_backward_cuda(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                           float* dx, Stream stream, const uint64_t* offset_base, bool write) {
  if (n <= 0) return;
  // Writing dx is the forward's map applied to dy (the same product, 0 where dropped).
  if (write) {
    SN_LAUNCH("dropout_kernel<backward, write>", dropout_kernel<false>, grid_for((n + 3) / 4),
              kThreads, 0, stream, n, p, seed, offset_base, offset, dy, dx);
    return;
  }
  SN_LAUNCH("dropout_kernel<backward>", dropout_kernel<true>, grid_for((n + 3) / 4), kThreads, 0,
            stream, n, p, seed, offset_base, offset, dy, dx);
}

void dropout_store_offset_cuda(uint64_t* dst, uint64_t value, Stream stream) {
  SN_LAUNCH("store_offset_kernel", store_offset_kernel, 1, 1, 0, stream, dst, value);
}

}  // namespace scratchnet::kernels
