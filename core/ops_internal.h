// Shared by the core/ops_*.cpp files, which hold the argument checks, device
// dispatch and autograd nodes of every op (the math lives in kernels/; those
// files only wire it): argument checks, the CUDA stream and the SN_GPU
// dispatch branch. Not part of the public API.
// Backward functions read tensors only from the node's saved list (detached:
// never the op's own output with its history, so no reference cycle keeps a
// graph alive) and capture only scalars and params structs, so that
// saved_memory() sees all a graph holds (core/autograd.h).
#pragma once
#include <string>

#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/batchnorm.h"

namespace scratchnet {
namespace k = kernels;
namespace ops_detail {

// SN_GPU(call): the CUDA branch of a dispatch. In a build without CUDA a CUDA
// tensor cannot exist, but say so clearly rather than compile nothing.
#ifdef SCRATCHNET_WITH_CUDA
#define SN_GPU(...) __VA_ARGS__
#else
#define SN_GPU(...) throw DeviceError(std::string(op) + ": built without CUDA")
#endif

inline k::Stream stream() {
#ifdef SCRATCHNET_WITH_CUDA
  return cuda::stream();
#else
  return nullptr;
#endif
}

inline void check_dtype(const char* op, const char* what, const Tensor& t, DType want) {
  if (!t.defined()) throw ShapeError(std::string(op) + ": " + what + " is undefined");
  if (t.dtype() != want)
    throw ShapeError(std::string(op) + ": " + what + " must be " + dtype_name(want) + ", got " +
                     t.str());
}

inline void check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
    } else if (t->device() != first->device()) {
      throw DeviceError(std::string(op) + ": tensors on different devices (" +
                        first->device().str() + " and " + t->device().str() +
                        "); move them with .to() first");
    }
  }
}

inline int as_int(const char* op, const char* what, int64_t v) {
  if (v > INT32_MAX)
    throw ShapeError(std::string(op) + ": " + what + " " + std::to_string(v) + " is too large");
  return static_cast<int>(v);
}

inline Tensor workspace(std::size_t bytes, Device d) {
  return Tensor::empty({static_cast<int64_t>(bytes)}, d, DType::U8);
}

// A gradient buffer for an input that needs none but whose kernel writes it
// together with one that does (conv weight/bias): scratch, thrown away.
inline Tensor or_scratch(const Tensor& g, const Tensor& like) {
  return g.defined() ? g : Tensor::zeros(like.shape(), like.device());
}

// A backward handed a fresh (uninitialised) gradient buffer whose kernel can
// only accumulate (core/autograd.h): zero it first, as the engine would have.
inline void zero_if_fresh(const Tensor& g, bool fresh) {
  if (fresh) Tensor(g).zero_();
}

inline float* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

// batch_norm's and batch_norm_synced's argument checks (ShapeError /
// ValueError / DeviceError naming `op`); the kernel's parameters.
k::BatchNormParams batch_norm_checks(const char* op, const Tensor& x, const Tensor& gamma,
                                     const Tensor& beta, const Tensor& running_mean,
                                     const Tensor& running_var, float momentum, float eps);

}  // namespace ops_detail
}  // namespace scratchnet
