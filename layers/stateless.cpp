// The layers without parameters: pools, dropout, flatten (ReLU and Sigmoid
// are inline in layers.h).
#include "kernels/pool2d.h"
#include "layers/layers.h"
#include "layers/shape_util.h"

namespace scratchnet {

namespace {

void check_pool_args(const char* layer, int kernel, int stride, int pad) {
  if (kernel <= 0)
    throw ValueError(std::string(layer) + ": kernel_size must be >= 1, got " +
                     std::to_string(kernel));
  if (stride <= 0)
    throw ValueError(std::string(layer) + ": stride must be >= 1, got " + std::to_string(stride));
  if (pad < 0 || 2 * pad > kernel)
    throw ValueError(std::string(layer) + ": padding must be between 0 and kernel_size / 2, got " +
                     std::to_string(pad) + " for kernel_size " + std::to_string(kernel));
}

Shape pool_output_shape(const char* op, const std::string& who, const Shape& in, int kernel,
                        int stride, int pad) {
  if (in.size() != 4) throw ShapeError(who + ": expected input (N, C, H, W), got " + shape_str(in));
  const auto p =
      kernels::pool2d_params(op, dim_int(op, in[0]), dim_int(op, in[1]), dim_int(op, in[2]),
                             dim_int(op, in[3]), kernel, kernel, stride, pad);
  return {in[0], in[1], p.P, p.Q};
}

}  // namespace

// --- MaxPool2d / AvgPool2d -------------------------------------------------------------

MaxPool2d::MaxPool2d(int kernel_size, int stride, int padding)
    : kernel_(kernel_size), stride_(stride == 0 ? kernel_size : stride), pad_(padding) {
  check_pool_args("MaxPool2d", kernel_, stride_, pad_);
}

Tensor MaxPool2d::forward(const Tensor& x) {
  return max_pool2d(x, kernel_, stride_, pad_);
}

std::string MaxPool2d::describe() const {
  return "MaxPool2d(kernel_size=" + std::to_string(kernel_) +
         ", stride=" + std::to_string(stride_) + ", padding=" + std::to_string(pad_) +
         ", dilation=1, ceil_mode=False)";
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  return pool_output_shape("max_pool2d", describe(), in, kernel_, stride_, pad_);
}

AvgPool2d::AvgPool2d(int kernel_size, int stride, int padding)
    : kernel_(kernel_size), stride_(stride == 0 ? kernel_size : stride), pad_(padding) {
  check_pool_args("AvgPool2d", kernel_, stride_, pad_);
}

Tensor AvgPool2d::forward(const Tensor& x) {
  return avg_pool2d(x, kernel_, stride_, pad_);
}

std::string AvgPool2d::describe() const {
  return "AvgPool2d(kernel_size=" + std::to_string(kernel_) +
         ", stride=" + std::to_string(stride_) + ", padding=" + std::to_string(pad_) + ")";
}

Shape AvgPool2d::output_shape(const Shape& in) const {
  return pool_output_shape("avg_pool2d", describe(), in, kernel_, stride_, pad_);
}

// --- AdaptiveAvgPool2d -----------------------------------------------------------------

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int output_h, int output_w) {
  if (output_h != 1 || output_w != 1)
    throw ValueError(
        "AdaptiveAvgPool2d: only output_size=(1, 1) is implemented (global average "
        "pooling), got (" +
        std::to_string(output_h) + ", " + std::to_string(output_w) + ")");
}

Shape AdaptiveAvgPool2d::output_shape(const Shape& in) const {
  if (in.size() != 4 || in[2] <= 0 || in[3] <= 0)
    throw ShapeError(describe() + ": expected input (N, C, H, W) with H, W > 0, got " +
                     shape_str(in));
  return {in[0], in[1], 1, 1};
}

// --- Dropout ---------------------------------------------------------------------------

Dropout::Dropout(float p, Generator& gen) : p_(p), gen_(&gen) {
  // The kernel's inverted scaling 1 / (1 - p) rules out p = 1.
  if (!(p >= 0.0f && p < 1.0f))
    throw ValueError("Dropout: probability p must be in [0, 1), got " + py_float(p));
}

std::string Dropout::describe() const {
  return "Dropout(p=" + py_float(p_) + ", inplace=False)";
}

// --- Flatten ---------------------------------------------------------------------------

Tensor Flatten::forward(const Tensor& x) {
  if (x.ndim() < 2)
    throw ShapeError(describe() +
                     ": expected input (N, ...) with at least 2 "
                     "dimensions, got " +
                     x.str());
  return x.flatten();
}

Shape Flatten::output_shape(const Shape& in) const {
  if (in.size() < 2)
    throw ShapeError(describe() + ": expected input (N, ...) with at least 2 dimensions, got " +
                     shape_str(in));
  int64_t rest = 1;
  for (std::size_t i = 1; i < in.size(); ++i) rest *= in[i];
  return {in[0], rest};
}

}  // namespace scratchnet
