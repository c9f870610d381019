#include "layers/module.h"

namespace scratchnet {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.push_back({name, std::move(t)});
  return params_.back().tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.push_back({name, std::move(t)});
  return buffers_.back().tensor;
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     std::vector<NamedTensor>& out) const {
  if (params)
    for (const auto& p : params_) out.push_back({prefix + p.name, p.tensor});
  if (buffers)
    for (const auto& b : buffers_) out.push_back({prefix + b.name, b.tensor});
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", params, buffers, out);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", true, false, out);
  return out;
}

std::vector<NamedTensor> Module::named_buffers() const {
  std::vector<NamedTensor> out;
  collect("", false, true, out);
  return out;
}

std::vector<NamedTensor> Module::state_dict() const {
  std::vector<NamedTensor> out;
  collect("", true, true, out);
  return out;
}

Shape Module::output_shape(const Shape& in) const {
  if (children_.empty())
    throw Error(describe() + ": output_shape is not implemented for this module");
  Shape s = in;
  for (const auto& [name, child] : children_) s = child->output_shape(s);
  return s;
}

Shape Module::trace_shapes(const Shape& in, const std::string& name,
                           const ShapeVisitor& visit) const {
  if (children_.empty()) {
    Shape out = output_shape(in);
    visit(name, *this, out);
    return out;
  }
  Shape s = in;
  for (const auto& [child_name, child] : children_)
    s = child->trace_shapes(s, name.empty() ? child_name : name + "." + child_name, visit);
  return s;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::set_fusion(bool on) {
  fusion_ = on;
  for (auto& [name, child] : children_) child->set_fusion(on);
}

void Module::to(Device device) {
  for (auto& entry : state_dict()) {
    Tensor& t = entry.tensor;
    if (t.dtype() != DType::F32 || t.device() == device) continue;
    Tensor moved = t.to(device);
    t.rebind(moved.storage(), moved.offset_bytes());
    if (t.grad().defined()) t.set_grad(Tensor());
  }
}

ParameterSlab pack_parameters(Module& module) {
  constexpr int64_t kAlign = 64;
  ParameterSlab slab;
  slab.views = module.named_parameters();
  if (slab.views.empty()) throw Error("pack_parameters: the module has no parameters");
  const Device device = slab.views.front().tensor.device();
  int64_t total = 0;
  std::vector<int64_t> offsets;
  for (const auto& v : slab.views) {
    if (v.tensor.device() != device)
      throw DeviceError("pack_parameters: parameter " + v.name + " is on " +
                        v.tensor.device().str() + ", others on " + device.str());
    offsets.push_back(total);
    total += (v.tensor.numel() + kAlign - 1) / kAlign * kAlign;
  }
  slab.params = Tensor::zeros({total}, device);
  slab.grads = Tensor::zeros({total}, device);
  for (std::size_t i = 0; i < slab.views.size(); ++i) {
    Tensor& t = slab.views[i].tensor;
    const std::size_t off = static_cast<std::size_t>(offsets[i]) * sizeof(float);
    Tensor dst = Tensor::view_of(slab.params.storage(), off, t.shape());
    dst.copy_(t);
    t.rebind(slab.params.storage(), off);
    t.set_grad(Tensor::view_of(slab.grads.storage(), off, t.shape()));
  }
  return slab;
}

}  // namespace scratchnet
