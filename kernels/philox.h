// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11): a counter-based generator. The output depends only on (key, counter),
// so the CPU and any CUDA thread compute the same number for the same element
// without shared state. This is what makes dropout masks and shuffles
// identical on both backends and reproducible from a seed.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct Philox4 {
  uint32_t v[4];
};

SN_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// counter: 128 bits as four words; key: 64-bit seed.
SN_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint64_t seed) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The i-th 32-bit random word of stream `offset` under `seed`: every consumer
// (dropout element i, shuffle draw i) maps its index here the same way.
SN_HD uint32_t philox_u32(uint64_t seed, uint64_t offset, uint64_t i) {
  uint64_t block = i >> 2;
  Philox4 r =
      philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                    static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), seed);
  return r.v[i & 3];
}

// Uniform float in [0, 1) with 24 random bits (exactly representable).
SN_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return static_cast<float>(philox_u32(seed, offset, i) >> 8) * (1.0f / 16777216.0f);
}

}  // namespace scratchnet::kernels
