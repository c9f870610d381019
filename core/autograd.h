// A micrograd-sized tape. Every differentiable op that sees an input needing
// a gradient creates a Node: one edge per input (where that input's gradient
// goes), the tensors its backward needs (saved) and a backward function.
// Tensor::backward() orders the graph topologically and walks it in reverse;
// gradients accumulate (+=) into per-node buffers (intermediates) or into
// leaf tensors' grad (parameters).
//
// Memory: a node never holds its inputs. An edge keeps the producing node
// (not the tensor, so not its storage) or, for a leaf that needs a gradient
// (a parameter), the leaf itself. The activations a graph keeps alive are
// exactly the nodes' `saved` lists: what each op's backward needs (ReLU its
// output, conv its input, max pool its argmax, add nothing). Backward
// functions take tensors only from `saved`, never by capture, so
// saved_memory() below sees everything a graph holds. A node's saved tensors
// and edges are released as soon as its backward has run.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace scratchnet {

// One input of a node, as backward needs it.
struct Edge {
  bool defined = false;        // false for an absent optional input (a conv without bias)
  bool requires_grad = false;  // at record time
  std::shared_ptr<Node> fn;    // the node that produced the input; null for a leaf
  Tensor leaf;                 // a leaf input that requires grad (receives .grad); else undefined
  Shape shape;
  DType dtype = DType::F32;
  Device device;
  std::string str() const;  // as Tensor::str() of the input
};

using BackwardFn =
    std::function<void(const Tensor& grad_output, const std::vector<Tensor>& grad_inputs,
                       const std::vector<Tensor>& saved)>;

struct Node {
  const char* name = "";
  std::vector<Edge> edges;
  // What backward reads: detached tensors (no history, so no cycle).
  std::vector<Tensor> saved;
  // grad_inputs[i] is a buffer to accumulate into (zero-initialised or
  // holding earlier contributions), undefined when input i needs no grad.
  BackwardFn backward;
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

// Attaches a node to `output` (marks it requiring grad). `inputs` are the
// op's differentiable inputs, in the order of backward's grad_inputs (inputs
// that need no gradient get undefined buffers); `saved` is everything
// backward reads besides the output gradient, passed back to it as `saved`.
void record(Tensor& output, const char* name, const std::vector<Tensor>& inputs,
            std::vector<Tensor> saved, BackwardFn backward);

// Runs the backward pass from `root` seeded with `seed` (same shape as root).
void run_backward(const Tensor& root, const Tensor& seed);

// Saved-activation accounting: the distinct storages that the graph behind
// `root` keeps alive for its backward, i.e. the union of the `saved` lists of
// every node reachable from root, each storage counted once (ReLU's output
// and the next conv's input are one storage), leaving out the storages of
// leaves that require grad (parameters: the model owns them whether or not a
// graph exists; a frozen parameter a node saves does count). The input batch
// a first conv saves counts (PyTorch's saved tensors include it too).
// Measured between forward and backward this is the activation memory of a
// training step; after backward it is 0 (nodes release what they saved).
struct SavedMemory {
  std::size_t storages = 0;   // distinct storages
  std::size_t bytes = 0;      // their sizes as requested (numel * dtype size)
  std::size_t allocated = 0;  // their sizes as the allocator rounds them
};
SavedMemory saved_memory(const Tensor& root);

}  // namespace scratchnet
