// The Module interface every layer and model implements: forward, named
// parameters and buffers (with PyTorch's state_dict keys), train/eval mode,
// and moving to a device. Containers register children under the names
// PyTorch would give them ("net.0", "conv1", "vgg_block0.conv0", ...), so
// state_dict() yields exactly the reference model's keys, in its order.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace scratchnet {

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))": as
  // PyTorch prints the module, for `scratchnet summary`.
  virtual std::string describe() const = 0;

  // Learnable tensors (requires_grad), recursively, in PyTorch's order.
  std::vector<NamedTensor> named_parameters() const;
  // Non-learnable state (BatchNorm running statistics and counter).
  std::vector<NamedTensor> named_buffers() const;
  // Parameters and buffers interleaved as PyTorch's state_dict() orders them:
  // per module its parameters, then its buffers, then its children.
  std::vector<NamedTensor> state_dict() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

  // Shapes without tensors (for `scratchnet summary` and input-size checks).
  // output_shape: what forward returns for an input of shape `in`; throws
  // ShapeError when `in` does not fit. The default runs the children in
  // registration order (right for every chain-like container); leaves and
  // containers with another data flow override it.
  virtual Shape output_shape(const Shape& in) const;
  // Calls visit(dotted name, leaf, leaf's output shape) for every leaf module
  // in the order forward runs them; returns the output shape. The default
  // suits leaves and chains; Residual overrides it.
  using ShapeVisitor =
      std::function<void(const std::string& name, const Module& leaf, const Shape& out)>;
  virtual Shape trace_shapes(const Shape& in, const std::string& name,
                             const ShapeVisitor& visit) const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Operator fusion (on by default): containers run a BatchNorm followed by
  // a ReLU as one batch_norm_relu op, a Conv2d followed by a ReLU as one
  // conv2d_relu op, and Residual its final add + ReLU as
  // add_relu. The modules, their names and state stay as they are (the
  // state_dict and the summary do not change); only the ops forward calls
  // do, with the same results (bit for bit on the CPU). Off: every leaf runs
  // its own op, for comparison. Applies to this module and its children.
  void set_fusion(bool on);
  bool fusion() const { return fusion_; }

  // Moves every float parameter and buffer to `device` in place (the Tensor
  // handles held elsewhere see the move). Integer buffers stay on the host.
  void to(Device device);

 protected:
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, bool params, bool buffers,
               std::vector<NamedTensor>& out) const;

  bool training_ = true;
  bool fusion_ = true;
  // Owned tensors by local name. std::vector keeps registration order.
  std::vector<NamedTensor> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// All parameters of a module in one contiguous slab, and all their gradients
// in a second one: every parameter (and every copy of its Tensor handle) is
// rebound to a view of `params`, and its grad set to the matching view of
// `grads`. zero_grad is then one memset and SGD one kernel over `total`
// floats. Offsets are aligned to 64 floats; the gaps stay zero.
struct ParameterSlab {
  Tensor params;                   // (total,) F32
  Tensor grads;                    // (total,) F32
  std::vector<NamedTensor> views;  // the parameters, as bound
};
ParameterSlab pack_parameters(Module& module);

}  // namespace scratchnet
