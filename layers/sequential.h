// Containers whose forward runs the children one after another, in the order
// they were added (so the default Module::output_shape / trace_shapes fit).
//   Chain: children under given names; the shape of the reference's
//     hand-written modules (AlexNet's conv1, rl1, ...; VGG_block's conv0,
//     relu0, ..., max_pool) whose forward is exactly that chain.
//   Sequential: nn.Sequential, children named "0", "1", ...
// Fusion pass: as children are added, a BatchNorm, Conv2d or Linear directly
// followed by a ReLU is marked as a pair that forward runs as one op
// (BatchNorm::forward_relu, Conv2d::forward_relu, Linear::forward_relu: on
// CUDA the ReLU runs in the convolution's or the GEMM's epilogue) while
// fusion is on (Module::set_fusion); both children stay registered.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layers/module.h"

namespace scratchnet {

class Chain : public Module {
 public:
  // type_name is what describe() prints ("AlexNet", "VGG_block", ...).
  explicit Chain(std::string type_name) : type_name_(std::move(type_name)) {}
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    if (!m) throw ValueError(type_name_ + ": cannot add an empty module as '" + name + "'");
    for (const auto& c : children())
      if (c.first == name) throw ValueError(type_name_ + ": a child named '" + name + "' exists");
    auto added = register_module(name, std::move(m));
    plan_fusion();
    return added;
  }
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return type_name_; }
  Shape output_shape(const Shape& in) const override {
    return children().empty() ? in : Module::output_shape(in);
  }
  std::size_t size() const { return children().size(); }
  Module& operator[](std::size_t i) const;

 private:
  void plan_fusion();

  std::string type_name_;
  // fuse_with_next_[i]: child i is a BatchNorm or Conv2d and child i + 1 a ReLU.
  std::vector<bool> fuse_with_next_;
};

class Sequential : public Chain {
 public:
  Sequential() : Chain("Sequential") {}
  // Appends m under the next index, as nn.Sequential names its children.
  template <typename M>
  std::shared_ptr<M> add(std::shared_ptr<M> m) {
    return Chain::add(std::to_string(size()), std::move(m));
  }
};

}  // namespace scratchnet
