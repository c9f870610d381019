// Model-step mode of `scratchnet bench`: the full training step as the
// trainer runs it (zero_grad, forward, cross-entropy, backward, SGD step) on
// one random batch already on the device, timed per step after warm-up (steps
// run back to back, one CUDA event between consecutive steps), with
// the allocator's peak memory, the activation bytes the autograd graph
// saves (measured on one untimed step) and a per-node profile of one extra step. The
// optimizer is the trainer's (train/optimizer.h SGD over a ParameterSlab).
//
// The profile: the step is run once more with a synchronisation around each
// part (forward, backward, SGD), and every autograd node's backward function
// is wrapped, before backward runs, to synchronise and time itself (core's
// Node exposes its backward as a std::function, so no core change is
// needed). Forward per layer cannot be timed inside the step without a hook
// in Module::forward, so each layer's module is run alone on an input of its
// shape (see forward_layers). None of this is part of the ms/step figure.
//
// On CUDA the step is also timed as training runs it: captured as the
// trainer's CUDA graph (train/step_graph.h: batch copied into the graph's
// input buffers, loss and correct count copied out, one graph launch) and
// replayed back to back; a second row/field next to the eager figure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <unordered_set>

#include "core/autograd.h"
#include "core/cuda.h"
#include "core/error.h"
#include "core/ops.h"
#include "layers/module.h"
#include "models/models.h"
#include "tools/bench_modes.h"
#include "tools/bench_rss.h"
#include "train/optimizer.h"
#include "train/step_graph.h"

namespace scratchnet::tools::bench {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Wraps every node reachable from `root` so its backward records its time.
void instrument(const Tensor& root, Device d, std::map<std::string, LayerTime>& out) {
  std::vector<std::shared_ptr<Node>> stack;
  std::unordered_set<Node*> seen;
  if (root.grad_fn()) stack.push_back(root.grad_fn());
  while (!stack.empty()) {
    std::shared_ptr<Node> node = stack.back();
    stack.pop_back();
    if (!seen.insert(node.get()).second) continue;
    for (const Edge& e : node->edges)
      if (e.fn) stack.push_back(e.fn);
    auto inner = node->backward;
    const std::string name = node->name;
    node->backward = [inner, name, d, &out](const Tensor& g, const std::vector<Tensor>& gi,
                                            const std::vector<Tensor>& saved) {
      if (d.is_cuda()) cuda::synchronize();
      const auto t0 = Clock::now();
      inner(g, gi, saved);
      if (d.is_cuda()) cuda::synchronize();
      const std::string key = name + " " + shape_str(g.shape());
      LayerTime& l = out[key];
      l.name = key;
      l.count += 1;
      l.ms += ms_since(t0);
    };
  }
}

// The module at a dotted PyTorch path ("net.0", "2.0.conv1"), or null.
Module* find_module(Module& root, const std::string& path) {
  Module* m = &root;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t dot = std::min(path.find('.', start), path.size());
    const std::string part = path.substr(start, dot - start);
    Module* next = nullptr;
    for (const auto& [name, child] : m->children())
      if (name == part) next = child.get();
    if (!next) return nullptr;
    m = next;
    start = dot + 1;
  }
  return m;
}

// Forward time of every layer on its own: the model's own leaf modules (found
// by name from the bench shape table, whose names the tests tie to the
// models) run on an input of the layer's shape, without recording a tape;
// the residual sum and functional ReLUs run the core ops. Median of 3 runs.
std::vector<LayerTime> forward_layers(Module& model, const std::string& name, int batch, int hw,
                                      int width_divisor, Device d, Timer& timer) {
  std::vector<LayerTime> out;
  NoGradGuard no_grad;
  for (const LayerShape& l : model_layers(name, batch, hw, width_divisor)) {
    Shape in;
    switch (l.kind) {
      case Kind::Conv:
        in = {l.conv.N, l.conv.C, l.conv.H, l.conv.W};
        break;
      case Kind::MaxPool:
      case Kind::AvgPool:
        in = {l.pool.N, l.pool.C, l.pool.H, l.pool.W};
        break;
      case Kind::BatchNorm:
        in = {l.bn.N, l.bn.C, l.bn.HW, 1};
        break;
      case Kind::Linear:
        in = {l.linear.N, l.linear.IN};
        break;
      case Kind::GlobalAvgPool: {
        const int side = static_cast<int>(std::lround(std::sqrt(double(l.hw))));
        in = {batch, l.planes / batch, side, side};
        break;
      }
      case Kind::CrossEntropy:
        in = {l.n, l.hw};
        break;
      case Kind::Sgd:
        continue;  // timed as the optimizer part of the step
      default:
        in = {l.n};
    }
    const Tensor x = Tensor::full(in, 0.5f, d);
    std::function<void()> run;
    Tensor labels, keep;
    if (l.kind == Kind::CrossEntropy) {
      labels = Tensor::zeros({l.n}, d, DType::I32);
      run = [&] { keep = cross_entropy(x, labels); };
    } else if (l.kind == Kind::Add) {
      run = [&] { keep = add(x, x); };
    } else if (l.layer.find('(') != std::string::npos) {
      run = [&] { keep = relu(x); };
    } else {
      Module* m = find_module(model, l.layer);
      if (!m) throw ValueError("bench: model " + name + " has no layer '" + l.layer + "'");
      run = [&, m] { keep = m->forward(x); };
    }
    LayerTime t;
    t.name = l.layer + " " + kind_name(l.kind) + " " + shape_str(in);
    t.count = 1;
    t.ms = timer.time(1, 3, run, false).median;
    keep = Tensor();
    out.push_back(t);
  }
  std::sort(out.begin(), out.end(),
            [](const LayerTime& a, const LayerTime& b) { return a.ms > b.ms; });
  return out;
}

// The trainer's graph step (train/trainer.cpp's one_rank_step) through a
// StepGraph: its warm-up steps and the capture untimed, then `steps` replays.
void time_graph_steps(Module& model, train::SGD& sgd, Generator& gen, const Tensor& X,
                      const Tensor& Y, int steps, Timer& timer, StepReport& r) {
  std::ostringstream log;
  train::StepGraph graph(true, model, sgd, gen, log);
  const Tensor loss_slot = Tensor::empty({}, X.device()),
               correct_slot = Tensor::empty({}, X.device(), DType::I32);
  const train::StepGraph::Body body = [&](const Tensor& x, const Tensor& y, const Tensor& lo,
                                          const Tensor& co) {
    sgd.zero_grad();
    Tensor logits = model.forward(x);
    Tensor loss = cross_entropy(logits, y);
    loss.backward();
    Tensor(lo).copy_(loss);
    Tensor(co).copy_(count_correct(logits, y));
    sgd.step();
  };
  const float lr = sgd.config().lr;
  auto step = [&] { graph.step(X, Y, lr, body, loss_slot, correct_slot); };
  for (int i = 0; i <= train::StepGraph::kWarmupSteps && graph.active(); ++i) step();
  if (graph.captures() != 1) {
    r.graph_note = graph.off_reason().empty() ? "not captured" : graph.off_reason();
    return;
  }
  timer.synchronize();
  r.graph_t = timer.time_sequence(steps, step);
  r.graphed = graph.replays() >= steps;
  r.graph_img_per_s = r.graph_t.median > 0 ? 1000.0 * r.batch / r.graph_t.median : 0;
  if (!r.graphed) r.graph_note = "graph off during the timed steps: " + graph.off_reason();
}

}  // namespace

StepReport run_step_bench(const StepOptions& o) {
  const auto def = models::defaults(o.model);
  const int batch = o.batch > 0 ? o.batch : def.batch_size;
  const int hw = o.image_size > 0 ? o.image_size : def.image_size;
  if (o.steps < 1) throw ValueError("bench: --steps must be >= 1, got " + std::to_string(o.steps));
  const Device d = o.device;
  models::check_input_size(o.model, hw);

  Generator gen(0);
  std::shared_ptr<Module> model = models::make(o.model, gen, o.width_divisor);
  model->train();
  model->to(d);
  // The trainer's optimizer: one slab of parameters, one of gradients, plain
  // SGD (no momentum buffer) at lr 0.01 as torch_bench.py, so that many steps
  // on one random batch stay finite whatever the model's training rate.
  train::SgdConfig config;
  config.lr = 0.01f;
  train::SGD sgd(pack_parameters(*model), config);

  // One random batch, uploaded once: the step never touches the host.
  Generator data_gen(1);
  const Tensor X = Tensor::from_vector(data_gen.uniform(int64_t{batch} * hw * hw, 0.0f, 1.0f),
                                       {batch, 1, hw, hw}, d);
  std::vector<int32_t> labels(static_cast<std::size_t>(batch));
  const std::vector<float> u = data_gen.uniform(batch, 0.0f, 10.0f);
  for (int i = 0; i < batch; ++i)
    labels[std::size_t(i)] = std::min(9, static_cast<int>(u[std::size_t(i)]));
  const Tensor Y = Tensor::from_vector(labels, {batch}, d);

  auto step = [&] {
    sgd.zero_grad();
    Tensor loss = cross_entropy(model->forward(X), Y);
    loss.backward();
    sgd.step();
  };

  Timer timer(d);
  RssWatch rss;  // model, optimizer and batch are in place: the steps' growth from here
  rss.start();
  for (int i = 0; i < o.warmup; ++i) step();
  StepReport r;
  {  // one more step, measuring what its graph saves between forward and backward
    sgd.zero_grad();
    Tensor loss = cross_entropy(model->forward(X), Y);
    r.saved_bytes = saved_memory(loss).bytes;
    loss.backward();
    sgd.step();
  }
  timer.synchronize();
  CachingAllocator::of(d).reset_peak();
  r.t = timer.time_sequence(o.steps, step);
  r.peak_mem_mib = double(CachingAllocator::of(d).stats().peak_in_use) / double(1 << 20);
  r.rss_growth_mib = rss.growth_mib();
  r.device = d.str();
  r.device_name = d.is_cuda() ? cuda::device_name(d.index) : "host CPU";
  r.model = o.model, r.batch = batch, r.image_size = hw, r.steps = o.steps, r.warmup = o.warmup;
  r.img_per_s = r.t.median > 0 ? 1000.0 * batch / r.t.median : 0;
  if (d.is_cuda()) time_graph_steps(*model, sgd, gen, X, Y, o.steps, timer, r);

  if (o.profile) {
    r.profiled = true;
    std::map<std::string, LayerTime> nodes;
    sgd.zero_grad();
    timer.synchronize();
    auto t0 = Clock::now();
    Tensor loss = cross_entropy(model->forward(X), Y);
    timer.synchronize();
    r.forward_ms = ms_since(t0);
    instrument(loss, d, nodes);
    t0 = Clock::now();
    loss.backward();
    timer.synchronize();
    r.backward_ms = ms_since(t0);
    t0 = Clock::now();
    sgd.step();
    timer.synchronize();
    r.optimizer_ms = ms_since(t0);
    for (auto& [key, l] : nodes) r.backward_layers.push_back(l);
    std::sort(r.backward_layers.begin(), r.backward_layers.end(),
              [](const LayerTime& a, const LayerTime& b) { return a.ms > b.ms; });
    const bool in_table = std::any_of(bench_models().begin(), bench_models().end(),
                                      [&](const BenchModel& m) { return m.name == o.model; });
    if (in_table) {
      r.forward_layers = forward_layers(*model, o.model, batch, hw, o.width_divisor, d, timer);
      r.forward_note =
          "forward per layer: each layer's module run alone on an input of its shape (no tape, "
          "median of 3); backward per autograd node of the profiled step (output shape)";
    } else {
      r.forward_note = "forward per layer: not available for " + o.model +
                       " (not in the bench shape table); backward per autograd node";
    }
  }
  return r;
}

}  // namespace scratchnet::tools::bench
