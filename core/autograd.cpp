#include "core/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"

namespace scratchnet {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() {
  return g_grad_enabled;
}

NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = previous_;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  return false;
}

void record(Tensor& output, const char* name, std::vector<Tensor> inputs,
            std::function<void(const Tensor&, const std::vector<Tensor>&)> backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  output.set_requires_grad(true);
  output.set_grad_fn(std::move(node));
}

namespace {

// Nodes reachable from root, parents after children reversed: the order in
// which backward runs (each node after every node that uses its output).
// Holds shared_ptrs: nodes release their inputs as they run, and the order
// must keep every node alive until its turn.
std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> seen;
  // Iterative post-order DFS: deep nets (ResNet-34) would be fine recursively,
  // but a long chain of ops should never overflow the stack.
  std::vector<std::pair<std::shared_ptr<Node>, std::size_t>> stack{{root, 0}};
  seen.insert(root.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      if (in.defined() && in.grad_fn()) {
        const std::shared_ptr<Node>& parent = in.grad_fn();
        if (seen.insert(parent.get()).second) stack.push_back({parent, 0});
      }
    } else {
      order.push_back(std::move(node));
      stack.pop_back();
    }
  }
  return {order.rbegin(), order.rend()};
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& seed) {
  if (!root.requires_grad())
    throw Error("backward: " + root.str() +
                " does not require grad (no parameter or input "
                "needing a gradient was used to compute it, or it ran under NoGradGuard)");
  if (seed.shape() != root.shape() || seed.device() != root.device())
    throw ShapeError("backward: seed gradient " + seed.str() + " does not match " + root.str());

  if (!root.grad_fn()) {  // a leaf: its gradient is the seed
    Tensor g = root.grad();
    if (!g.defined()) {
      g = Tensor::zeros(root.shape(), root.device());
      const_cast<Tensor&>(root).set_grad(g);
    }
    accumulate(seed, g);
    return;
  }

  NoGradGuard no_grad;                      // backward functions build no graph of their own
  std::unordered_map<Node*, Tensor> grads;  // gradient of each node's output
  grads[root.grad_fn().get()] = seed;
  for (const std::shared_ptr<Node>& node_ptr : topological_order(root.grad_fn())) {
    Node* node = node_ptr.get();
    auto it = grads.find(node);
    if (it == grads.end()) continue;  // no path carried a gradient here
    Tensor grad_out = it->second;
    grads.erase(it);
    if (!node->backward)
      throw Error(std::string("backward: the graph through ") + node->name +
                  " was already used by an earlier backward(); run the forward pass again");

    std::vector<Tensor> grad_in(node->inputs.size());
    for (std::size_t i = 0; i < node->inputs.size(); ++i) {
      Tensor& in = node->inputs[i];
      if (!in.defined() || !in.requires_grad()) continue;
      if (in.grad_fn()) {
        Tensor& g = grads[in.grad_fn().get()];
        if (!g.defined()) g = Tensor::zeros(in.shape(), in.device());
        grad_in[i] = g;
      } else {
        Tensor g = in.grad();
        if (!g.defined()) {
          g = Tensor::zeros(in.shape(), in.device());
          in.set_grad(g);
        } else if (g.shape() != in.shape()) {
          throw ShapeError("autograd: gradient " + g.str() + " of a leaf does not match " +
                           in.str());
        }
        grad_in[i] = g;
      }
    }
    node->backward(grad_out, grad_in);
    for (std::size_t i = 0; i < grad_in.size(); ++i)
      if (grad_in[i].defined() && grad_in[i].shape() != node->inputs[i].shape())
        throw ShapeError(std::string("autograd: ") + node->name + " produced gradient " +
                         grad_in[i].str() + " for input " + node->inputs[i].str());
    // Free what this node saved (activations) as soon as it has run, as
    // PyTorch does without retain_graph: keeps peak memory down.
    node->backward = nullptr;
    node->inputs.clear();
  }
}

}  // namespace scratchnet
