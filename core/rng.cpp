#include "core/rng.h"

#include "core/cuda.h"
#include "core/error.h"
#include "kernels/dropout.h"
#include "kernels/philox.h"

namespace scratchnet {

std::vector<int32_t> Generator::permutation(int32_t n) {
  std::vector<int32_t> p(static_cast<std::size_t>(n > 0 ? n : 0));
  for (int32_t i = 0; i < n; ++i) p[i] = i;
  const uint64_t stream = next_offset();
  for (int32_t i = n - 1; i > 0; --i) {
    // Multiply-shift maps a 32-bit word onto [0, i] with bias below 2^-32 * n.
    const uint64_t r = kernels::philox_u32(seed_, stream, static_cast<uint64_t>(i));
    const int32_t j = static_cast<int32_t>((r * static_cast<uint64_t>(i + 1)) >> 32);
    std::swap(p[i], p[j]);
  }
  return p;
}

std::vector<float> Generator::uniform(int64_t n, float lo, float hi) {
  std::vector<float> v(static_cast<std::size_t>(n > 0 ? n : 0));
  const uint64_t stream = next_offset();
  for (int64_t i = 0; i < n; ++i)
    v[i] = lo + (hi - lo) * kernels::philox_uniform(seed_, stream, static_cast<uint64_t>(i));
  return v;
}

void Generator::store_offset(uint64_t* device_word) const {
#ifdef SCRATCHNET_WITH_CUDA
  kernels::dropout_store_offset_cuda(device_word, offset_, cuda::stream());
#else
  (void)device_word;
  throw DeviceError("Generator::store_offset: built without CUDA");
#endif
}

}  // namespace scratchnet
