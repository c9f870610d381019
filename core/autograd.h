// A micrograd-sized tape. Every differentiable op that sees an input needing
// a gradient creates a Node: one edge per input (where that input's gradient
// goes), the tensors its backward needs (saved) and a backward function.
// Tensor::backward() orders the graph topologically and walks it in reverse;
// gradients accumulate (+=) into per-node buffers (intermediates) or into
// leaf tensors' grad (parameters).
//
// Fresh buffers (no zero-fill for the first contribution): an intermediate's
// gradient buffer is created by the first backward that contributes to it
// (the engine walks consumers before producers, so the first one to run is
// known). A node recorded with record_writing() gets such a first buffer
// uninitialised and is told so (fresh[i]); it must then WRITE (=) every
// element of grad_inputs[i], as a GEMM with beta 0 does; later contributions
// (fresh[i] false: a tensor with several consumers, the residual shortcut)
// accumulate (+=) as always. A node recorded with record() gets zero-filled
// first buffers and always accumulates, so ops migrate one at a time. That
// saves a memset and a read per activation gradient per step on the GPU.
// Never fresh: leaves' .grad (parameters: they persist across steps and
// zero_grad owns them), and an input that is the same tensor as another input
// of the node (add(x, x)): both of its grad_inputs are one buffer, so both
// get the zero-filled, accumulating path and the kernel may alias them.
// SCRATCHNET_GRAD_FILL (read at each backward) is a debug switch:
//   unset/"" fresh buffers uninitialised (the product)
//   "nan"    fresh buffers filled with NaN: an op that reads one instead of
//            writing it poisons the gradients (the tests run whole steps so)
//   "zero"   no fresh buffers: every buffer zero-filled, every op accumulates
//            (the path before fresh buffers, the tests' reference)
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
// fresh[i]: grad_inputs[i] is uninitialised and must be written, not
// accumulated into (see the top of this file). fresh.size() == grad_inputs.size().
using WritingBackwardFn =
    std::function<void(const Tensor& grad_output, const std::vector<Tensor>& grad_inputs,
                       const std::vector<Tensor>& saved, const std::vector<bool>& fresh)>;

struct Node {
  const char* name = "";
  std::vector<Edge> edges;
  // What backward reads: detached tensors (no history, so no cycle).
  std::vector<Tensor> saved;
  // grad_inputs[i] is a buffer to accumulate into (zero-initialised or
  // holding earlier contributions), or to write when fresh[i] (only with
  // writes_fresh), undefined when input i needs no grad.
  // Always three arguments (tools wrap it to time it); record_writing()
  // wraps its WritingBackwardFn, which reads `fresh` as set just before.
  BackwardFn backward;
  bool writes_fresh = false;  // record_writing(): may be handed fresh buffers
  std::vector<bool> fresh;    // the engine's flags for the coming backward call
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
// As record(), for a backward that writes fresh buffers (see the top).
void record_writing(Tensor& output, const char* name, const std::vector<Tensor>& inputs,
                    std::vector<Tensor> saved, WritingBackwardFn backward);

// Runs the backward pass from `root` seeded with `seed` (same shape as root).
void run_backward(const Tensor& root, const Tensor& seed);

// What the last backward() on this thread did with intermediates' gradient
// buffers: how many it handed out fresh (no zero-fill) and how many it zeroed
// (a first contribution to an op recorded with record(), an input used twice
// by one node, or SCRATCHNET_GRAD_FILL=zero). Leaves' .grad not included.
// For tests and the memory/traffic accounting of a step.
struct GradBufferStats {
  std::size_t fresh = 0, fresh_bytes = 0;
  std::size_t zeroed = 0, zeroed_bytes = 0;
};
GradBufferStats last_backward_grad_buffers();

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
