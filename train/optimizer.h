// SGD over a ParameterSlab: torch.optim.SGD's update (dampening 0), run as one
// sgd_step over every parameter at once, with the momentum buffer a second
// slab of the same layout. zero_grad is one memset of the gradient slab.
// The checkpointable state is the momentum buffer (per parameter, by name, so
// a checkpoint does not depend on the slab's alignment) and the step count.
#pragma once
#include <cstdint>
#include <vector>

#include "layers/module.h"

namespace scratchnet::train {

struct SgdConfig {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

class SGD {
 public:
  // Takes the slab from pack_parameters(model); validates the config
  // (ValueError naming the bad value).
  SGD(ParameterSlab slab, SgdConfig config);

  void zero_grad();
  void step();

  const SgdConfig& config() const { return config_; }
  void set_lr(float lr);
  const ParameterSlab& slab() const { return slab_; }
  int64_t step_count() const { return steps_; }

  // Momentum buffer views, named like the parameters ("net.0.weight", ...);
  // empty when momentum is 0. Before the first step their content is unused
  // (first_step semantics).
  std::vector<NamedTensor> momentum_buffers() const;
  // Restores what momentum_buffers() and step_count() described; tensors may
  // live on any device. With no buffers (a run saved without momentum) the
  // buffer starts afresh; otherwise every parameter needs one of its shape
  // (ValueError naming the missing or mismatched one).
  void load_state(const std::vector<NamedTensor>& buffers, int64_t steps);

  // The host side of the optimizer (step count, first-step flag). A step
  // replayed from a CUDA graph (step_graph.h) runs its kernels without
  // step(): the graph restores what its capture changed, then counts the
  // step with count_replayed_step().
  struct HostState {
    int64_t steps = 0;
    bool fresh_buffer = true;
  };
  HostState host_state() const { return {steps_, fresh_buffer_}; }
  void set_host_state(const HostState& s) {
    steps_ = s.steps;
    fresh_buffer_ = s.fresh_buffer;
  }
  void count_replayed_step() {
    ++steps_;
    fresh_buffer_ = false;
  }
  // While a CUDA graph captures a step: the SGD kernel reads its rate from
  // this device float (0-d F32 on the slab's device) instead of taking
  // config().lr as an argument, so replays follow the schedule. An undefined
  // tensor: back to the argument.
  void read_lr_from(const Tensor& device_lr);

 private:
  ParameterSlab slab_;
  SgdConfig config_;
  Tensor buf_;  // (total,) F32, like slab_.params; undefined without momentum
  std::vector<NamedTensor> buf_views_;  // per-parameter views of buf_
  int64_t steps_ = 0;
  bool fresh_buffer_ = true;  // the next step initialises the buffer (first_step)
  Tensor lr_device_;          // see read_lr_from; undefined: lr by argument
};

}  // namespace scratchnet::train
