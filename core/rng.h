// The engine's random numbers: Philox4x32-10 keyed by a seed, with a stream
// offset that advances once per use (one dropout call, one shuffle). The
// state is just (seed, offset), so it is saved in checkpoints and restored on
// resume, and the CPU and GPU draw the same numbers from it.
#pragma once
#include <cstdint>
#include <vector>

namespace scratchnet {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves one stream and returns its offset.
  uint64_t next_offset() { return offset_++; }

  // A uniformly random permutation of 0..n-1 (Fisher-Yates over one stream).
  std::vector<int32_t> permutation(int32_t n);
  // Uniform floats in [lo, hi) (one stream), for weight initialisation.
  std::vector<float> uniform(int64_t n, float lo, float hi);

 private:
  uint64_t seed_, offset_;
};

}  // namespace scratchnet
