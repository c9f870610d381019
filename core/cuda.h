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

// --- CUDA graphs of the engine stream (train/step_graph.h) ---
// While the stream captures, its work is recorded, not run; anything that
// synchronises or calls cudaMalloc fails (CudaError) and invalidates the
// capture, which end_capture() then reports.
bool capturing();      // the engine stream is capturing now
void begin_capture();  // cudaStreamBeginCapture, global mode; throws on failure

// An instantiated graph (cudaGraphExec_t), destroyed with its owner.
class Graph {
 public:
  Graph() = default;
  ~Graph();  // a failure to destroy is reported on stderr (destructors do not throw)
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  bool valid() const { return exec_ != nullptr; }
  void launch();  // on the engine stream; no sync
  void reset();   // destroys it now

 private:
  friend Graph end_capture();
  void* exec_ = nullptr;
};
// Ends the capture and instantiates what it recorded. When the capture was
// invalidated or cannot be instantiated, throws CudaError/DeviceError saying
// why; the stream is no longer capturing either way.
Graph end_capture();
// Ends a capture that failed part-way (an exception inside it): drops its
// work and clears the error it left for cudaGetLastError. Never throws; a
// no-op when the stream is not capturing.
void abort_capture() noexcept;

}  // namespace scratchnet::cuda
