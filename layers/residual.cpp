#include "layers/residual.h"

namespace scratchnet {

Residual::Residual(Generator& gen, int input_channels, int num_channels, bool use_1x1conv,
                   int strides)
    : in_(input_channels), out_(num_channels), strides_(strides) {
  if (!use_1x1conv && (input_channels != num_channels || strides != 1))
    throw ValueError("Residual(" + std::to_string(input_channels) + ", " +
                     std::to_string(num_channels) + ", strides=" + std::to_string(strides) +
                     "): the skip path changes shape, so use_1x1conv must be true");
  conv1_ = register_module(
      "conv1", std::make_shared<Conv2d>(gen, input_channels, num_channels, 3, strides, 1));
  conv2_ =
      register_module("conv2", std::make_shared<Conv2d>(gen, num_channels, num_channels, 3, 1, 1));
  if (use_1x1conv)
    conv3_ = register_module(
        "conv3", std::make_shared<Conv2d>(gen, input_channels, num_channels, 1, strides, 0));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(num_channels));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(num_channels));
}

Tensor Residual::forward(const Tensor& x) {
  if (!fusion()) {
    Tensor y = relu(bn1_->forward(conv1_->forward(x)));
    y = bn2_->forward(conv2_->forward(y));
    return relu(add(y, conv3_ ? conv3_->forward(x) : x));
  }
  // The same computation with bn1 + ReLU and add + ReLU fused.
  Tensor y = bn1_->forward_relu(conv1_->forward(x));
  y = bn2_->forward(conv2_->forward(y));
  return add_relu(y, conv3_ ? conv3_->forward(x) : x);
}

std::string Residual::describe() const {
  return "Residual(" + std::to_string(in_) + ", " + std::to_string(out_) +
         ", use_1x1conv=" + (conv3_ ? "True" : "False") + ", strides=" + std::to_string(strides_) +
         ")";
}

Shape Residual::output_shape(const Shape& in) const {
  return trace_shapes(in, "", [](const std::string&, const Module&, const Shape&) {});
}

Shape Residual::trace_shapes(const Shape& in, const std::string& name,
                             const ShapeVisitor& visit) const {
  const std::string prefix = name.empty() ? "" : name + ".";
  auto step = [&](const Module& m, const char* child, const Shape& s) {
    return m.trace_shapes(s, prefix + child, visit);
  };
  Shape y = step(*bn1_, "bn1", step(*conv1_, "conv1", in));
  y = step(*bn2_, "bn2", step(*conv2_, "conv2", y));
  const Shape skip = conv3_ ? step(*conv3_, "conv3", in) : in;
  if (skip != y)
    throw ShapeError(describe() + ": the residual path gives " + shape_str(y) +
                     " but the skip path " + shape_str(skip) + " for input " + shape_str(in));
  return y;
}

}  // namespace scratchnet
