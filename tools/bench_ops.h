// One benchmark case per layer shape: device buffers for the operands and,
// per pass (fwd, bwd_data, bwd_weight ...), a closure that calls the
// engine's own kernel function (kernels/*.h, *_cpu or *_cuda: the same code
// the training step runs, never a copy), with its FLOP and byte counts.
//
// Byte counts are the minimal DRAM traffic of the pass: every operand read
// once, every output written once, accumulated outputs (+=) read and written.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/cuda.h"
#include "kernels/gemm.h"
#include "tools/bench_shapes.h"

// Calls cpu_call, or cuda_call with `st` bound to the engine stream when dev
// is a CUDA device. A CPU-only build drops the CUDA branch unparsed, so it may
// name *_cuda functions that only exist with CUDA.
#ifdef SCRATCHNET_WITH_CUDA
#define SN_BENCH_CALL(dev, cpu_call, cuda_call)                                         \
  do {                                                                                  \
    if ((dev).is_cuda()) {                                                              \
      [[maybe_unused]] ::scratchnet::kernels::Stream st = ::scratchnet::cuda::stream(); \
      cuda_call;                                                                        \
    } else {                                                                            \
      cpu_call;                                                                         \
    }                                                                                   \
  } while (0)
#else
#define SN_BENCH_CALL(dev, cpu_call, cuda_call) \
  do {                                          \
    (void)(dev);                                \
    cpu_call;                                   \
  } while (0)
#endif

namespace scratchnet::tools::bench {

// Owns the buffers of one case on one device. Fills are deterministic in the
// seed, so a CPU and a CUDA arena built with the same seeds hold the same values.
class Arena {
 public:
  explicit Arena(Device device) : device_(device) {}
  Device device() const { return device_; }
  float* random(int64_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
  float* zeros(int64_t n);
  int32_t* labels(int64_t n, int classes, uint64_t seed);  // ints in [0, classes)
  void* bytes(std::size_t n);                              // uninitialised scratch
  std::vector<float> download(const float* p, int64_t n) const;

 private:
  void* alloc(std::size_t bytes);
  Device device_;
  std::vector<std::unique_ptr<Storage>> owned_;
};

struct Pass {
  std::string name;             // fwd, bwd_data, bwd_weight, bwd, step
  double flops = 0, bytes = 0;  // per call
  std::function<void()> run;
  std::vector<std::pair<const float*, int64_t>> outputs;  // compared by the validation
  int64_t reduction = 1;     // longest sum behind one output (sets the tolerance)
  bool gemm_backed = false;  // conv2d / linear / gemm: compared with cuBLAS on `gemm`
  kernels::GemmParams gemm{};
};

struct Case {
  std::unique_ptr<Arena> arena;
  std::vector<Pass> passes;
};

// The passes of one layer on `device`; operands filled from `seed`.
Case make_case(const LayerShape& layer, Device device, uint64_t seed);

// A plain GEMM C = op(A) op(B) (+ beta C) on `device`.
Case make_gemm_case(const kernels::GemmParams& p, Device device, uint64_t seed);

// The GEMMs a linear layer amounts to: fwd y = x Wᵀ, bwd_data dx += dy W,
// bwd_weight dW += dyᵀ x (row-major, as kernels/gemm.h).
std::array<kernels::GemmParams, 3> linear_gemms(const kernels::LinearParams& p);

// The same layer at a small batch (2) for validation against the CPU.
LayerShape small_batch(const LayerShape& layer);

}  // namespace scratchnet::tools::bench
