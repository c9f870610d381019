// Internal to kernels/cuda: the one split-K rule of the engine's GEMMs (the
// conv weight gradient in conv2d.cu, the single GEMMs of gemm.cu).
//
// A GEMM whose output tiles alone would leave the GPU idle (few tiles, long
// reduction) splits the reduction into `split` slices of one length `slice`
// (a multiple of the k-step; the last may be shorter), each slice a block
// that writes its partial product to a workspace; a second pass adds the
// slices in ascending order. Deterministic: no atomics, and the plan is a
// fixed function of the shape (kTargetBlocks is a constant, not the device's
// SM count), so the bits are the same on every GPU.
//   split = min(kTargetBlocks / tiles           (fill the GPU, no more),
//               kMaxSplit,
//               len / kMinSliceTerms            (slices long enough to pay
//                                                for their partial's store),
//               kSplitBudgetFloats / per_slice  (bounded workspace)),
//   at least 1 (no split).
#pragma once
#include <algorithm>
#include <cstdint>

namespace scratchnet::kernels::cudadetail {

// Blocks a GEMM aims for: 2 per SM of a 132-SM H100/H200.
constexpr int kTargetBlocks = 264;
constexpr int kMaxSplit = 128;
constexpr int64_t kMinSliceTerms = 512;
constexpr int64_t kSplitBudgetFloats = (64LL << 20) / 4;  // 64 MiB of partial products

struct SplitK {
  int split;  // slices (1: none)
  int slice;  // reduction terms per slice (a multiple of `step`)
};

// tiles: output tiles (blocks without a split); len: reduction length;
// per_slice: workspace floats one slice's partial takes; step: the kernel's k-step.
inline SplitK split_k_plan(int64_t tiles, int64_t len, int64_t per_slice, int step) {
  int64_t split = std::clamp<int64_t>(kTargetBlocks / std::max<int64_t>(tiles, 1), 1, kMaxSplit);
  split = std::min(split, std::max<int64_t>(1, len / kMinSliceTerms));
  split =
      std::min(split, std::max<int64_t>(1, kSplitBudgetFloats / std::max<int64_t>(per_slice, 1)));
  if (len <= 0) return {1, 0};
  const int64_t slice = (((len + split - 1) / split + step - 1) / step) * step;
  return {static_cast<int>((len + slice - 1) / slice), static_cast<int>(slice)};
}

}  // namespace scratchnet::kernels::cudadetail
