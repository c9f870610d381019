#include <cstdlib>
#include <cstring>

#include "kernels/cuda/check.h"

namespace scratchnet::kernels {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  throw CudaError(std::string("CUDA error in ") + call + " at " + file + ":" +
                  std::to_string(line) + ": " + cudaGetErrorName(err) + " (" +
                  cudaGetErrorString(err) + ")");
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("SCRATCHNET_SYNC");
    return v != nullptr && std::strcmp(v, "0") != 0 && *v != '\0';
  }();
  return on;
}

void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, kernel, file, line);
  if (sync_after_launch()) {
    err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess) throw_cuda_error(err, kernel, file, line);
  }
}

}  // namespace scratchnet::kernels
