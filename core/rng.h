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

  // A reserved stream as a CUDA kernel takes it: offset = (*base, when base is
  // set) + offset. Eager: base nullptr, the offset itself. While a CUDA graph
  // captures a step (train/step_graph.h), whose kernels replay the arguments
  // they were captured with: base is the device word given to
  // capture_offsets() and offset the distance from the step's first offset,
  // so a replay draws fresh streams once store_offset() wrote its first one.
  struct OffsetRef {
    const uint64_t* base;
    uint64_t offset;
  };
  OffsetRef next_offset_ref() {
    const uint64_t o = next_offset();
    return device_base_ ? OffsetRef{device_base_, o - capture_first_} : OffsetRef{nullptr, o};
  }
  // device_base: a uint64 in GPU memory that outlives the captured graph;
  // nullptr ends it. Host draws (shuffles) are unaffected.
  void capture_offsets(const uint64_t* device_base) {
    device_base_ = device_base;
    capture_first_ = offset_;
  }
  // Writes offset() into the device word, in stream order (before a replay).
  void store_offset(uint64_t* device_word) const;

  // The seed of per-example draws (dropout masks). Data-parallel ranks share
  // seed and offset, so that they start from the same weights and shuffle
  // alike, but each must draw its own masks: rank r > 0 mixes r into this
  // seed. Rank 0, and a single process, draw with seed() itself.
  void set_rank(int rank) { rank_ = static_cast<uint64_t>(rank); }
  uint64_t example_seed() const { return rank_ == 0 ? seed_ : seed_ ^ (rank_ * kGolden); }

  // A uniformly random permutation of 0..n-1 (Fisher-Yates over one stream).
  std::vector<int32_t> permutation(int32_t n);
  // Uniform floats in [lo, hi) (one stream), for weight initialisation.
  std::vector<float> uniform(int64_t n, float lo, float hi);

 private:
  static constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
  uint64_t seed_, offset_;
  uint64_t rank_ = 0;
  const uint64_t* device_base_ = nullptr;  // see capture_offsets
  uint64_t capture_first_ = 0;
};

}  // namespace scratchnet
