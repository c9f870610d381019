// Shared by the emulator's runtime files (not by kernels): configuration from
// the environment, and the error state behind cudaGetLastError.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"

namespace sn_emu {

enum class Order { Forward, Reverse, Shuffle };

// Read once from the environment:
//   SCRATCHNET_EMU_ORDER    forward (default) | reverse | shuffle: the order in
//                           which a block's threads run between two barriers
//   SCRATCHNET_EMU_SEED     seed of the shuffled order (default 1)
//   SCRATCHNET_EMU_THREADS  CPU threads that run blocks (default: all cores)
//   SCRATCHNET_EMU_DEVICES  how many devices to pretend (default 1; tests of cuda:N)
//   SCRATCHNET_EMU_STACK_KB stack of one CUDA thread (default 128)
struct Config {
  Order order = Order::Forward;
  uint64_t seed = 1;
  int threads = 1;
  int devices = 1;
  std::size_t stack_bytes = 128 * 1024;
  std::string error;  // a bad value: every call then fails with this message
};
const Config& config();
const char* order_name(Order o);

// Records err as this host thread's last error (unless it is cudaSuccess)
// and returns it; detail, when given, is appended to cudaGetErrorString.
cudaError_t fail(cudaError_t err, const std::string& detail = "");
// A kernel failed: the error is sticky, as on a GPU (every later call returns it).
cudaError_t fail_sticky(cudaError_t err, const std::string& detail);
// The sticky error, or cudaSuccess.
cudaError_t sticky();

// --- stream capture (graph.cpp) ---
// One piece of recorded work: what it is (for messages) and how to run it.
struct Node {
  std::string what;
  std::function<cudaError_t()> run;
};
// The state of a stream; its capture, when it has one.
struct StreamState {
  unsigned flags = 0;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;  // the thread that began the capture
  std::string invalidated_by;
  std::vector<Node> nodes;
};
// Whether `stream` is capturing (active or invalidated): its work must go
// to record(), not run.
bool capturing(cudaStream_t stream);
// Records work on a capturing stream. Returns cudaSuccess, or
// cudaErrorStreamCaptureInvalidated when the capture has been invalidated.
cudaError_t record(cudaStream_t stream, std::string what, std::function<cudaError_t()> run);
// For calls CUDA refuses during a capture (`call` names it): when a capture
// prohibits them on this thread, invalidates it and returns
// cudaErrorStreamCaptureUnsupported (recorded for cudaGetLastError);
// otherwise cudaSuccess.
cudaError_t refuse_if_capturing(const char* call);
// cudaStreamSynchronize / cudaDeviceSynchronize: refused while `stream` (any
// stream when nullptr and the call is cudaDeviceSynchronize) captures.
cudaError_t refuse_sync(cudaStream_t stream, const char* call);
// cudaDeviceReset: every capture ends (its work is dropped).
void reset_captures();

}  // namespace sn_emu

// The runtime's stream handle (cudaStream_t points at one).
struct CUstream_st : sn_emu::StreamState {};
