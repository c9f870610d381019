// A micrograd-sized tape. Every differentiable op that sees an input needing
// a gradient creates a Node: its parents, and a backward function that
// closes over what it saved. Tensor::backward() orders the graph
// topologically and walks it in reverse; gradients accumulate (+=) into
// per-node buffers (intermediates) or into leaf tensors' grad (parameters).
// A node's saved tensors are released as soon as it has run.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace scratchnet {

struct Node {
  const char* name = "";
  std::vector<Tensor> inputs;
  // grad_inputs[i] is a buffer to accumulate into (zero-initialised or
  // holding earlier contributions), undefined when inputs[i] needs no grad.
  std::function<void(const Tensor& grad_output, const std::vector<Tensor>& grad_inputs)> backward;
};

// Is gradient recording on (thread-local)? Off inside a NoGradGuard.
bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op over these inputs must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Attaches a node to `output` (marks it requiring grad). Inputs that need no
// gradient get undefined grad buffers in backward.
void record(Tensor& output, const char* name, std::vector<Tensor> inputs,
            std::function<void(const Tensor&, const std::vector<Tensor>&)> backward);

// Runs the backward pass from `root` seeded with `seed` (same shape as root).
void run_backward(const Tensor& root, const Tensor& seed);

}  // namespace scratchnet
