// Helpers shared by the CUDA kernel files: the one way kernels are launched
// (SN_LAUNCH, below), launch geometry computed in 64 bit
// and clamped to what the hardware accepts (kernels then use grid-stride
// loops, so a clamped grid still covers every element), and a fixed-order
// block reduction (the same inputs always sum in the same order: results are
// bit-identical run to run, which float atomics would not give).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "kernels/cuda/check.h"

namespace scratchnet::kernels::cudadetail {

// kernel<<<grid, block, smem, stream>>>(args...), then the launch check
// (check_launch). Under nvcc it is exactly that; in the emulated build (g++,
// SCRATCHNET_CUDA=EMULATE) the emulator's runtime runs the grid on the CPU.
// Every kernel file launches through SN_LAUNCH, so no `<<<` appears anywhere
// else and the same sources serve both.
template <class... P, class... A>
void launch_kernel(const char* file, int line, const char* name, void (*kernel)(P...), dim3 grid,
                   dim3 block, std::size_t smem, cudaStream_t stream, A&&... args) {
#if defined(__CUDACC__)
  kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
#else
  sn_emu::launch_kernel(name, kernel, grid, block, smem, stream, std::forward<A>(args)...);
#endif
  check_launch(name, stream, file, line);
}

// SN_LAUNCH("name", kernel, grid, block, smem, stream, args...)
#define SN_LAUNCH(...) \
  ::scratchnet::kernels::cudadetail::launch_kernel(__FILE__, __LINE__, __VA_ARGS__)

constexpr int kThreads = 256;
// Enough blocks to fill an H100/H200 many times over; grid-stride loops do the rest.
constexpr int64_t kMaxBlocks = 65535LL * 16;

inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

__device__ __forceinline__ int64_t global_tid() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Sum of one value per thread over the block, in a fixed tree order. All
// threads of the block must call it; the result is valid in thread 0 (and
// returned to every thread). `smem` holds blockDim.x elements; blockDim.x must
// be a power of two.
template <typename T>
__device__ T block_reduce_sum(T v, T* smem) {
  const unsigned tid = threadIdx.x;
  smem[tid] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) smem[tid] += smem[tid + s];
    __syncthreads();
  }
  T r = smem[0];
  __syncthreads();  // smem may be reused by the caller right after
  return r;
}

}  // namespace scratchnet::kernels::cudadetail
