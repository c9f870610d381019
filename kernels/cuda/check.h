// Checking every CUDA call and launch. A failure throws CudaError naming the
// call, file and line. Launches are checked by SN_LAUNCH (launch.cuh). SCRATCHNET_SYNC=1 in the environment synchronises after
// each launch so an asynchronous fault is reported at the kernel that caused
// it. Include only in CUDA builds.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "kernels/error.h"

namespace scratchnet::kernels {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
// After a launch: cudaGetLastError, and a stream sync when SCRATCHNET_SYNC=1.
void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line);
bool sync_after_launch();  // SCRATCHNET_SYNC=1 (read once)

}  // namespace scratchnet::kernels

#define SN_CUDA_CHECK(call)                                                        \
  do {                                                                             \
    cudaError_t sn_err_ = (call);                                                  \
    if (sn_err_ != cudaSuccess)                                                    \
      ::scratchnet::kernels::throw_cuda_error(sn_err_, #call, __FILE__, __LINE__); \
  } while (0)
