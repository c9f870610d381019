// Shared by the emulator's runtime files (not by kernels): configuration from
// the environment, and the error state behind cudaGetLastError.
#pragma once
#include <cstdint>
#include <string>

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

}  // namespace sn_emu
