// Shared by every kernel file: the stream handle type (declared without the
// CUDA headers so CPU-only code can name it) and the host/device qualifier.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/error.h"

struct CUstream_st;  // the CUDA runtime's cudaStream_t is CUstream_st*

namespace scratchnet::kernels {

using Stream = CUstream_st*;

#if defined(__CUDACC__)
#define SN_HD __host__ __device__ __forceinline__
#else
#define SN_HD inline
#endif

// Throws ShapeError("<op>: <what>") unless cond holds.
inline void require(bool cond, const char* op, const std::string& what) {
  if (!cond) throw ShapeError(std::string(op) + ": " + what);
}

}  // namespace scratchnet::kernels
