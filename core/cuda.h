// The core's window on the CUDA runtime. Declared without CUDA headers so the
// CPU-only build compiles the same callers; in a build without CUDA,
// available() is false and everything else throws DeviceError.
//
// One stream carries all work (kernels, copies, memsets): no hidden syncs, and
// the whole training step can later be captured as a CUDA graph.
#pragma once
#include <cstddef>
#include <string>

#include "kernels/common.h"

namespace scratchnet::cuda {

bool compiled();   // built with CUDA kernels
bool available();  // compiled and at least one usable GPU
int device_count();
std::string device_name(int index = 0);  // "NVIDIA H200", or throws
// The process's GPU: scratchnet runs on one GPU per process. The first call
// (from --device cuda:N, or the first CUDA allocation) chooses it; asking
// for another one afterwards throws DeviceError. Every entry point below
// binds the calling thread to it (cudaSetDevice) before it touches CUDA.
void use_device(int index);
int current_device();  // the chosen GPU (0 until one is chosen)
kernels::Stream stream();                // the engine's stream (created on first use)
void synchronize();                      // waits for the stream

void* malloc_device(std::size_t bytes);  // raw cudaMalloc; nullptr when out of memory
void free_device(void* p);
void memcpy_h2d(void* dst, const void* src, std::size_t bytes);  // then stream sync-free
void memcpy_d2h(void* dst, const void* src, std::size_t bytes);  // waits for the stream
void memcpy_d2d(void* dst, const void* src, std::size_t bytes);
void memset_zero(void* dst, std::size_t bytes);
// Device memory free/total, for messages.
void mem_info(std::size_t* free_bytes, std::size_t* total_bytes);

}  // namespace scratchnet::cuda
