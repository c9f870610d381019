#include "train/optimizer.h"

#include <cmath>
#include <string>
#include <unordered_map>

namespace scratchnet::train {

namespace {

void check_config(const SgdConfig& c) {
  auto bad = [](const char* what, float v, const char* want) {
    throw ValueError(std::string("sgd: ") + what + " must be " + want + ", got " +
                     std::to_string(v));
  };
  if (!std::isfinite(c.lr) || !(c.lr > 0.0f)) bad("learning rate", c.lr, "finite and > 0");
  if (!std::isfinite(c.momentum) || c.momentum < 0.0f || c.momentum >= 1.0f)
    bad("momentum", c.momentum, "in [0, 1)");
  if (!std::isfinite(c.weight_decay) || c.weight_decay < 0.0f)
    bad("weight decay", c.weight_decay, "finite and >= 0");
  if (c.nesterov && c.momentum == 0.0f)
    throw ValueError("sgd: Nesterov momentum needs a momentum > 0");
}

}  // namespace

SGD::SGD(ParameterSlab slab, SgdConfig config) : slab_(std::move(slab)), config_(config) {
  check_config(config_);
  if (!slab_.params.defined() || !slab_.grads.defined())
    throw ValueError("sgd: empty parameter slab (call pack_parameters on the model first)");
  if (config_.momentum != 0.0f) {
    buf_ = Tensor::zeros(slab_.params.shape(), slab_.params.device());
    // The views sit at the same offsets as the parameters inside their slab.
    for (const auto& v : slab_.views)
      buf_views_.push_back(
          {v.name, Tensor::view_of(buf_.storage(), v.tensor.offset_bytes(), v.tensor.shape())});
  }
}

void SGD::zero_grad() {
  slab_.grads.zero_();
}

void SGD::step() {
  kernels::SgdParams p;
  p.lr = config_.lr;
  p.momentum = config_.momentum;
  p.weight_decay = config_.weight_decay;
  p.nesterov = config_.nesterov;
  p.first_step = fresh_buffer_;
  if (lr_device_.defined()) p.lr_device = lr_device_.data<float>();
  sgd_step(slab_.params, slab_.grads, buf_, p);
  ++steps_;
  fresh_buffer_ = false;
}

void SGD::set_lr(float lr) {
  SgdConfig c = config_;
  c.lr = lr;
  check_config(c);
  config_ = c;
}

void SGD::read_lr_from(const Tensor& device_lr) {
  if (device_lr.defined() &&
      (!device_lr.is_cuda() || device_lr.dtype() != DType::F32 || device_lr.numel() != 1 ||
       device_lr.device() != slab_.params.device()))
    throw ValueError("sgd: the learning rate must come from one F32 on the parameters' GPU, got " +
                     device_lr.str());
  lr_device_ = device_lr;
}

std::vector<NamedTensor> SGD::momentum_buffers() const {
  return buf_views_;
}

void SGD::load_state(const std::vector<NamedTensor>& buffers, int64_t steps) {
  if (steps < 0) throw ValueError("sgd: step count must be >= 0, got " + std::to_string(steps));
  // A run saved without momentum (no buffers) may resume with it: the buffer
  // then starts afresh, as on a first step.
  if (buf_.defined() && steps > 0 && !buffers.empty()) {
    std::unordered_map<std::string, const Tensor*> by_name;
    for (const auto& b : buffers) by_name[b.name] = &b.tensor;
    // Check all before copying any: a failed load leaves the state untouched.
    for (const auto& v : buf_views_) {
      auto it = by_name.find(v.name);
      if (it == by_name.end())
        throw ValueError("sgd: the saved optimizer state has no momentum buffer for " + v.name);
      if (it->second->shape() != v.tensor.shape() || it->second->dtype() != DType::F32)
        throw ValueError("sgd: momentum buffer for " + v.name + " is " + it->second->str() +
                         ", expected float32 " + shape_str(v.tensor.shape()));
    }
    for (auto& v : buf_views_) {
      Tensor dst = v.tensor;
      dst.copy_(*by_name.at(v.name));
    }
    fresh_buffer_ = false;
  } else {
    if (buf_.defined()) buf_.zero_();
    fresh_buffer_ = true;
  }
  steps_ = steps;
}

}  // namespace scratchnet::train
