// Tensor: a shape, a dtype, a device and a shared storage. Always contiguous
// (row-major, NCHW for images). Copies of a Tensor share one TensorImpl, so a
// parameter rebound into a slab is seen by every holder. Touching host data of
// a CUDA tensor throws; moving between devices is explicit (to()).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"

namespace scratchnet {

// I64 exists for PyTorch's BatchNorm num_batches_tracked (a host-side counter).
enum class DType { F32, I32, U8, I64 };  // bf16 / fp16 can follow
std::size_t dtype_size(DType t);
const char* dtype_name(DType t);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& s);    // throws ShapeError on negative or overflow

struct Node;
struct TensorImpl;

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::U8;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::I64;
}

class Tensor {
 public:
  Tensor() = default;  // undefined (no data); defined() is false

  static Tensor empty(const Shape& shape, Device device = Device::cpu(), DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, Device device = Device::cpu(), DType dtype = DType::F32);
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  // A view of `bytes` of an existing storage (used for slabs); no copy.
  static Tensor view_of(std::shared_ptr<Storage> storage, std::size_t offset_bytes,
                        const Shape& shape, DType dtype = DType::F32);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int ndim() const { return static_cast<int>(shape().size()); }
  int64_t size(int dim) const;  // negative counts from the end; throws when out of range
  int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype()); }
  DType dtype() const;
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  std::string str() const;  // "float32 (2, 3) on cpu"

  // Raw pointer for kernels, on whatever device the tensor lives; checks the dtype.
  template <typename T>
  T* data() const;
  // Host pointer; throws DeviceError for a CUDA tensor.
  template <typename T>
  T* host() const;
  // Copies to the host (synchronising for CUDA) and returns the values.
  template <typename T = float>
  std::vector<T> to_vector() const;
  float item() const;  // a one-element F32 tensor's value

  Tensor to(Device device) const;  // a copy (or this tensor if already there)
  Tensor clone() const;            // a copy on the same device, no autograd history
  void copy_(const Tensor& src);   // same shape and dtype; any devices
  void zero_();
  void fill_(float value);  // F32 only

  // A tensor sharing this one's storage with another shape of the same numel.
  // Records an autograd node when this tensor requires grad.
  Tensor reshape(const Shape& shape) const;
  Tensor flatten() const;  // (N, ...) -> (N, rest)
  Tensor detach() const;   // same storage, no history, no requires_grad

  // --- autograd ---
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);
  Tensor grad() const;             // undefined until a backward reaches it
  void set_grad(const Tensor& g);  // shape must match
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> node);
  // Backpropagates from this one-element tensor (seed 1) or with `grad`.
  void backward(const Tensor& grad = Tensor()) const;

  // Points this tensor (and every copy of it) at other storage, keeping its
  // shape: how parameters and gradients move into one slab.
  void rebind(std::shared_ptr<Storage> storage, std::size_t offset_bytes);
  const std::shared_ptr<Storage>& storage() const;
  std::size_t offset_bytes() const;

  bool same(const Tensor& o) const { return impl_ == o.impl_; }
  TensorImpl* impl() const { return impl_.get(); }

 private:
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  void require_defined(const char* what) const;
  void* raw() const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  Shape shape;
  DType dtype = DType::F32;
  std::shared_ptr<Storage> storage;
  std::size_t offset_bytes = 0;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
};

// Throws ShapeError "<op>: expected <what>, got <shape>" unless cond holds.
void check_shape(bool cond, const char* op, const std::string& what, const Tensor& t);

}  // namespace scratchnet
