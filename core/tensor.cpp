#include "core/tensor.h"

#include <cstring>
#include <limits>
#include <sstream>

#include "core/autograd.h"
#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/elementwise.h"

namespace scratchnet {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::I32:
      return 4;
    case DType::U8:
      return 1;
    case DType::I64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::I32:
      return "int32";
    case DType::U8:
      return "uint8";
    case DType::I64:
      return "int64";
  }
  return "?";
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw ShapeError("tensor: negative dimension in shape " + shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw ShapeError("tensor: shape " + shape_str(s) + " has too many elements");
    n *= d;
  }
  return n;
}

void check_shape(bool cond, const char* op, const std::string& what, const Tensor& t) {
  if (!cond)
    throw ShapeError(std::string(op) + ": expected " + what + ", got " +
                     (t.defined() ? t.str() : std::string("an undefined tensor")));
}

// --- construction ---------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, Device device, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  impl->storage = std::make_shared<Storage>(device, bytes);
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, Device device, DType dtype) {
  Tensor t = empty(shape, device, dtype);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, device, DType::F32);
  t.fill_(value);
  return t;
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    throw ShapeError("tensor: " + std::to_string(values.size()) + " values do not fill shape " +
                     shape_str(shape));
  Tensor t = empty(shape, device, dtype_of<T>());
  if (device.is_cpu())
    std::memcpy(t.raw(), values.data(), t.nbytes());
  else if (t.nbytes() > 0)
    cuda::memcpy_h2d(t.raw(), values.data(), t.nbytes());
  return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, std::size_t offset_bytes,
                       const Shape& shape, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  if (!storage || offset_bytes + bytes > storage->bytes())
    throw ShapeError("tensor: view of " + shape_str(shape) + " does not fit its storage");
  impl->storage = std::move(storage);
  impl->offset_bytes = offset_bytes;
  return Tensor(std::move(impl));
}

// --- accessors --------------------------------------------------------------

void Tensor::require_defined(const char* what) const {
  if (!impl_) throw Error(std::string("tensor: ") + what + " of an undefined tensor");
}

const Shape& Tensor::shape() const {
  require_defined("shape");
  return impl_->shape;
}

int64_t Tensor::size(int dim) const {
  const int n = ndim();
  const int d = dim < 0 ? dim + n : dim;
  if (d < 0 || d >= n)
    throw ShapeError("tensor: dimension " + std::to_string(dim) + " out of range for " + str());
  return impl_->shape[d];
}

int64_t Tensor::numel() const {
  return shape_numel(shape());
}

DType Tensor::dtype() const {
  require_defined("dtype");
  return impl_->dtype;
}

Device Tensor::device() const {
  require_defined("device");
  return impl_->storage->device();
}

std::string Tensor::str() const {
  if (!impl_) return "undefined tensor";
  return std::string(dtype_name(dtype())) + " " + shape_str(shape()) + " on " + device().str();
}

void* Tensor::raw() const {
  require_defined("data");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset_bytes;
}

template <typename T>
T* Tensor::data() const {
  require_defined("data");
  if (impl_->dtype != dtype_of<T>())
    throw Error(std::string("tensor: asked for ") + dtype_name(dtype_of<T>()) + " data of a " +
                str());
  return static_cast<T*>(raw());
}

template <typename T>
T* Tensor::host() const {
  if (is_cuda())
    throw DeviceError("tensor: host access to " + str() +
                      "; copy it with .to(Device::cpu()) first");
  return data<T>();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  T* p = data<T>();
  std::vector<T> out(static_cast<std::size_t>(numel()));
  if (out.empty()) return out;
  if (is_cuda())
    cuda::memcpy_d2h(out.data(), p, nbytes());
  else
    std::memcpy(out.data(), p, nbytes());
  return out;
}

#define SN_INSTANTIATE(T)              \
  template T* Tensor::data<T>() const; \
  template T* Tensor::host<T>() const; \
  template std::vector<T> Tensor::to_vector<T>() const;
SN_INSTANTIATE(float)
SN_INSTANTIATE(int32_t)
SN_INSTANTIATE(uint8_t)
SN_INSTANTIATE(int64_t)
#undef SN_INSTANTIATE

float Tensor::item() const {
  if (numel() != 1) throw ShapeError("tensor: item() of " + str() + ", which is not one element");
  return to_vector<float>()[0];
}

// --- copies -------------------------------------------------------------------

Tensor Tensor::to(Device device) const {
  require_defined("to");
  if (this->device() == device) return *this;
  Tensor out = empty(shape(), device, dtype());
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), device(), dtype());
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  require_defined("copy_");
  if (src.shape() != shape() || src.dtype() != dtype())
    throw ShapeError("copy: cannot copy " + src.str() + " into " + str());
  const std::size_t n = nbytes();
  if (n == 0) return;
  const bool dst_cuda = is_cuda(), src_cuda = src.is_cuda();
  if (!dst_cuda && !src_cuda)
    std::memmove(raw(), src.raw(), n);
  else if (dst_cuda && src_cuda)
    cuda::memcpy_d2d(raw(), src.raw(), n);
  else if (dst_cuda)
    cuda::memcpy_h2d(raw(), src.raw(), n);
  else
    cuda::memcpy_d2h(raw(), src.raw(), n);
}

void Tensor::zero_() {
  require_defined("zero_");
  if (nbytes() == 0) return;
  if (is_cuda())
    cuda::memset_zero(raw(), nbytes());
  else
    std::memset(raw(), 0, nbytes());
}

void Tensor::fill_(float value) {
  float* p = data<float>();
  if (is_cuda()) {
#ifdef SCRATCHNET_WITH_CUDA
    kernels::fill_cuda(numel(), value, p, cuda::stream());
#endif
  } else {
    kernels::fill_cpu(numel(), value, p);
  }
}

// --- views ---------------------------------------------------------------------

Tensor Tensor::reshape(const Shape& new_shape) const {
  require_defined("reshape");
  if (shape_numel(new_shape) != numel())
    throw ShapeError("reshape: cannot view " + str() + " as " + shape_str(new_shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = new_shape;
  impl->dtype = impl_->dtype;
  impl->storage = impl_->storage;
  impl->offset_bytes = impl_->offset_bytes;
  Tensor out(std::move(impl));
  if (needs_grad({this})) {
    const Shape in_shape = shape();
    // A fresh input gradient is a copy of the output gradient's bits.
    record_writing(out, "reshape", {*this}, {},
                   [in_shape](const Tensor& gy, const std::vector<Tensor>& gx,
                              const std::vector<Tensor>&, const std::vector<bool>& fresh) {
                     Tensor g = gy.detach().reshape(in_shape);
                     Tensor dst = gx[0];
                     if (fresh[0])
                       dst.copy_(g);
                     else
                       accumulate(g, dst);
                   });
  }
  return out;
}

Tensor Tensor::flatten() const {
  if (ndim() < 1) throw ShapeError("flatten: expected at least one dimension, got " + str());
  const int64_t n = size(0);
  return reshape({n, n == 0 ? 0 : numel() / n});
}

Tensor Tensor::detach() const {
  require_defined("detach");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  impl->storage = impl_->storage;
  impl->offset_bytes = impl_->offset_bytes;
  return Tensor(std::move(impl));
}

// --- autograd plumbing ------------------------------------------------------------

bool Tensor::requires_grad() const {
  return impl_ && impl_->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool on) {
  require_defined("set_requires_grad");
  if (on && impl_->dtype != DType::F32)
    throw Error("tensor: only float32 tensors can require gradients, not " + str());
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  require_defined("grad");
  return impl_->grad;
}

void Tensor::set_grad(const Tensor& g) {
  require_defined("set_grad");
  if (g.defined() && (g.shape() != shape() || g.dtype() != dtype() || g.device() != device()))
    throw ShapeError("autograd: gradient " + g.str() + " does not match tensor " + str());
  impl_->grad = g;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  require_defined("grad_fn");
  return impl_->grad_fn;
}

void Tensor::set_grad_fn(std::shared_ptr<Node> node) {
  require_defined("set_grad_fn");
  impl_->grad_fn = std::move(node);
}

void Tensor::backward(const Tensor& grad) const {
  require_defined("backward");
  Tensor seed = grad;
  if (!seed.defined()) {
    if (numel() != 1)
      throw ShapeError("backward: called without a gradient on " + str() +
                       "; only a one-element tensor (a loss) can seed itself");
    seed = Tensor::full(shape(), 1.0f, device());
  }
  run_backward(*this, seed);
}

void Tensor::rebind(std::shared_ptr<Storage> storage, std::size_t offset_bytes) {
  require_defined("rebind");
  if (!storage || offset_bytes + nbytes() > storage->bytes())
    throw ShapeError("tensor: rebinding " + str() + " to storage that is too small");
  impl_->storage = std::move(storage);
  impl_->offset_bytes = offset_bytes;
}

const std::shared_ptr<Storage>& Tensor::storage() const {
  require_defined("storage");
  return impl_->storage;
}

std::size_t Tensor::offset_bytes() const {
  require_defined("offset");
  return impl_->offset_bytes;
}

}  // namespace scratchnet
