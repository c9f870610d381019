#include "core/autograd.h"

#include <cstdlib>
#include <limits>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"

namespace scratchnet {

namespace {
thread_local bool g_grad_enabled = true;
thread_local GradBufferStats g_grad_buffers;
}  // namespace

GradBufferStats last_backward_grad_buffers() {
  return g_grad_buffers;
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

std::string Edge::str() const {
  if (!defined) return "undefined tensor";
  return std::string(dtype_name(dtype)) + " " + shape_str(shape) + " on " + device.str();
}

namespace {

std::shared_ptr<Node> make_node(Tensor& output, const char* name,
                                const std::vector<Tensor>& inputs, std::vector<Tensor> saved) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->edges.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined()) {
      e.defined = true;
      e.requires_grad = in.requires_grad();
      e.fn = in.grad_fn();
      if (!e.fn && e.requires_grad) e.leaf = in;
      e.shape = in.shape();
      e.dtype = in.dtype();
      e.device = in.device();
    }
    node->edges.push_back(std::move(e));
  }
  for (const Tensor& t : saved)
    if (t.defined() && t.grad_fn())
      throw Error(std::string("autograd: ") + name +
                  " saves a tensor with history; save a detach()ed one (a cycle would leak the "
                  "graph)");
  node->saved = std::move(saved);
  output.set_requires_grad(true);
  output.set_grad_fn(node);
  return node;
}

}  // namespace

void record(Tensor& output, const char* name, const std::vector<Tensor>& inputs,
            std::vector<Tensor> saved, BackwardFn backward) {
  make_node(output, name, inputs, std::move(saved))->backward = std::move(backward);
}

void record_writing(Tensor& output, const char* name, const std::vector<Tensor>& inputs,
                    std::vector<Tensor> saved, WritingBackwardFn backward) {
  auto node = make_node(output, name, inputs, std::move(saved));
  // A raw pointer: the function lives in the node, so never outlives it.
  node->backward = [fn = std::move(backward), n = node.get()](
                       const Tensor& gy, const std::vector<Tensor>& g,
                       const std::vector<Tensor>& s) { fn(gy, g, s, n->fresh); };
  node->writes_fresh = true;
}

namespace {

// Nodes reachable from root, parents after children reversed: the order in
// which backward runs (each node after every node that uses its output).
// Holds shared_ptrs: nodes release their edges as they run, and the order
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
    if (next < node->edges.size()) {
      const std::shared_ptr<Node>& parent = node->edges[next++].fn;
      if (parent && seen.insert(parent.get()).second) stack.push_back({parent, 0});
    } else {
      order.push_back(std::move(node));
      stack.pop_back();
    }
  }
  return {order.rbegin(), order.rend()};
}

enum class GradFill { Uninit, NaN, Zero };

// SCRATCHNET_GRAD_FILL (core/autograd.h), read once per backward.
GradFill grad_fill() {
  const char* v = std::getenv("SCRATCHNET_GRAD_FILL");
  if (v == nullptr || *v == '\0') return GradFill::Uninit;
  const std::string s(v);
  if (s == "nan") return GradFill::NaN;
  if (s == "zero") return GradFill::Zero;
  throw ValueError("SCRATCHNET_GRAD_FILL: expected nan or zero (or unset), got '" + s + "'");
}

// Is edge i's producer also the producer of another edge of `node`?
bool shared_parent(const Node& node, std::size_t i) {
  for (std::size_t j = 0; j < node.edges.size(); ++j)
    if (j != i && node.edges[j].fn == node.edges[i].fn) return true;
  return false;
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& seed) {
  if (!root.requires_grad())
    throw Error("backward: " + root.str() +
                " does not require grad (no parameter or input "
                "needing a gradient was used to compute it, or it ran under NoGradGuard)");
  if (seed.shape() != root.shape() || seed.device() != root.device())
    throw ShapeError("backward: seed gradient " + seed.str() + " does not match " + root.str());
  g_grad_buffers = {};

  if (!root.grad_fn()) {  // a leaf: its gradient is the seed
    Tensor g = root.grad();
    if (!g.defined()) {
      g = Tensor::zeros(root.shape(), root.device());
      const_cast<Tensor&>(root).set_grad(g);
    }
    accumulate(seed, g);
    return;
  }

  const GradFill fill = grad_fill();
  GradBufferStats stats;
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

    std::vector<Tensor> grad_in(node->edges.size());
    std::vector<bool> fresh(node->edges.size(), false);
    for (std::size_t i = 0; i < node->edges.size(); ++i) {
      Edge& e = node->edges[i];
      if (!e.defined || !e.requires_grad) continue;
      if (e.fn) {
        Tensor& g = grads[e.fn.get()];
        if (!g.defined()) {
          if (node->writes_fresh && fill != GradFill::Zero && !shared_parent(*node, i)) {
            fresh[i] = true;
            g = fill == GradFill::NaN
                    ? Tensor::full(e.shape, std::numeric_limits<float>::quiet_NaN(), e.device)
                    : Tensor::empty(e.shape, e.device);
            stats.fresh += 1;
            stats.fresh_bytes += g.nbytes();
          } else {
            g = Tensor::zeros(e.shape, e.device);
            stats.zeroed += 1;
            stats.zeroed_bytes += g.nbytes();
          }
        }
        grad_in[i] = g;
      } else {
        Tensor g = e.leaf.grad();
        if (!g.defined()) {
          g = Tensor::zeros(e.shape, e.device);
          e.leaf.set_grad(g);
        } else if (g.shape() != e.shape) {
          throw ShapeError("autograd: gradient " + g.str() + " of a leaf does not match " +
                           e.str());
        }
        grad_in[i] = g;
      }
    }
    node->fresh = std::move(fresh);
    node->backward(grad_out, grad_in, node->saved);
    for (std::size_t i = 0; i < grad_in.size(); ++i)
      if (grad_in[i].defined() && grad_in[i].shape() != node->edges[i].shape)
        throw ShapeError(std::string("autograd: ") + node->name + " produced gradient " +
                         grad_in[i].str() + " for input " + node->edges[i].str());
    // Free what this node saved (activations) and its edges as soon as it has
    // run, as PyTorch does without retain_graph: a saved tensor dies when the
    // last node that saved it has run.
    node->backward = nullptr;
    node->fresh.clear();
    node->saved.clear();
    node->edges.clear();
  }
  g_grad_buffers = stats;
}

SavedMemory saved_memory(const Tensor& root) {
  SavedMemory m;
  if (!root.defined() || !root.grad_fn()) return m;
  std::vector<Node*> stack{root.grad_fn().get()};
  std::unordered_set<Node*> seen{stack.back()};
  std::unordered_set<const Storage*> params, saved;
  std::vector<const Storage*> order;  // saved storages, first seen first
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& e : node->edges) {
      if (e.leaf.defined()) params.insert(e.leaf.storage().get());
      if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
    for (const Tensor& t : node->saved)
      if (t.defined() && saved.insert(t.storage().get()).second) order.push_back(t.storage().get());
  }
  for (const Storage* s : order) {
    if (params.count(s)) continue;
    m.storages += 1;
    m.bytes += s->bytes();
    m.allocated += CachingAllocator::round_size(s->bytes());
  }
  return m;
}

}  // namespace scratchnet
