// The residual block of the course (d2l's Residual):
//   Y = relu(bn1(conv1(X))); Y = bn2(conv2(Y)); out = relu(Y + (conv3(X) or X))
// conv1 3x3 (stride s, pad 1), conv2 3x3 (pad 1), conv3 1x1 (stride s) only
// with use_1x1conv, bn1 / bn2 BatchNorm2d. Children are registered in the
// reference's order (conv1, conv2, conv3, bn1, bn2) so the state_dict keys and
// order match; forward and trace_shapes follow the data flow instead.
// With fusion on (the default, Module::set_fusion) forward runs
// relu(bn1(.)) as batch_norm_relu and the final relu(add) as add_relu.
#pragma once
#include <memory>

#include "layers/layers.h"

namespace scratchnet {

class Residual : public Module {
 public:
  Residual(Generator& gen, int input_channels, int num_channels, bool use_1x1conv = false,
           int strides = 1);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override;
  Shape trace_shapes(const Shape& in, const std::string& name,
                     const ShapeVisitor& visit) const override;

 private:
  int in_, out_, strides_;
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;  // conv3_ null without use_1x1conv
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
};

}  // namespace scratchnet
