// CPU reference for inverted dropout (see dropout.h). Element i is kept when
// philox_uniform(seed, offset, i) < 1 - p (the float 1.0f - p, the same
// expression the CUDA kernel must use for bit-identical masks). One Philox
// call yields four words, the words of elements 4b..4b+3 (philox_u32's
// mapping), so a call serves four elements. The work goes in chunks of
// kChunk elements: first the chunk's Philox words in a loop of independent
// calls (which the compiler vectorises across blocks, ~20x faster than one
// call at a time), then the mask is applied.
#include "kernels/dropout.h"

#include "kernels/philox.h"

namespace scratchnet::kernels {

namespace {

constexpr int64_t kChunk = 256;  // a multiple of 4: chunks start on a block

// Calls f(i, kept) for every i in [0, n).
template <typename F>
void for_each_mask(int64_t n, float p, uint64_t seed, uint64_t offset, F f) {
  const float keep_below = 1.0f - p;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const uint32_t off_lo = static_cast<uint32_t>(offset),
                 off_hi = static_cast<uint32_t>(offset >> 32);
#pragma omp parallel for schedule(static) if (n >= (1 << 14))
  for (int64_t ch = 0; ch < chunks; ++ch) {
    uint32_t words[kChunk];
    const uint64_t first_block = static_cast<uint64_t>(ch) * (kChunk / 4);
    for (int k = 0; k < kChunk / 4; ++k) {
      const uint64_t b = first_block + k;
      const Philox4 r = philox4x32_10(static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32),
                                      off_lo, off_hi, seed);
      for (int j = 0; j < 4; ++j) words[4 * k + j] = r.v[j];
    }
    const int64_t begin = ch * kChunk, len = n - begin < kChunk ? n - begin : kChunk;
    for (int64_t j = 0; j < len; ++j) {
      // philox_uniform's conversion: 24 random bits, exactly representable.
      const float u = static_cast<float>(words[j] >> 8) * (1.0f / 16777216.0f);
      f(begin + j, u < keep_below);
    }
  }
}

}  // namespace

void dropout_forward_cpu(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                         float* y) {
  const float scale = 1.0f / (1.0f - p);
  for_each_mask(n, p, seed, offset,
                [=](int64_t i, bool kept) { y[i] = kept ? x[i] * scale : 0.0f; });
}

void dropout_backward_cpu(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                          float* dx, bool write) {
  // Writing dx is the forward's map applied to dy (the same product, 0 where dropped).
  if (write) return dropout_forward_cpu(n, p, seed, offset, dy, dx);
  const float scale = 1.0f / (1.0f - p);
  for_each_mask(n, p, seed, offset, [=](int64_t i, bool kept) {
    if (kept) dx[i] += dy[i] * scale;
  });
}

}  // namespace scratchnet::kernels
