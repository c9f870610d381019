#include "train/step_graph.h"

#include <cstdlib>
#include <exception>
#include <ostream>

#include "core/allocator.h"

namespace scratchnet::train {

namespace {

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// SCRATCHNET_GRAPH_TEST_FAIL=sync|alloc: a capture that fails on purpose.
std::string test_failure() {
  const char* v = std::getenv("SCRATCHNET_GRAPH_TEST_FAIL");
  return v ? v : "";
}

}  // namespace

StepGraph::StepGraph(bool enabled, Module& model, SGD& opt, Generator& gen, std::ostream& log)
    : enabled_(enabled), model_(model), opt_(opt), gen_(gen), log_(log) {
  for (const auto& nb : model_.named_buffers())
    if (nb.tensor.dtype() == DType::I64 && nb.tensor.device().is_cpu() && nb.tensor.numel() == 1)
      counters_.push_back(nb.tensor);
}

StepGraph::~StepGraph() {
  try {
    drop_graph();
  } catch (const std::exception& e) {
    log_ << "note: CUDA graph: " << first_line(e.what()) << "\n";
  }
}

StepGraph::HostState StepGraph::save() const {
  HostState s;
  s.opt = opt_.host_state();
  for (const Tensor& c : counters_) s.counters.push_back(c.host<int64_t>()[0]);
  s.gen_offset = gen_.offset();
  return s;
}

void StepGraph::restore(const HostState& s) {
  opt_.set_host_state(s.opt);
  for (std::size_t i = 0; i < counters_.size(); ++i)
    counters_[i].host<int64_t>()[0] = s.counters[i];
  gen_.set_state(gen_.seed(), s.gen_offset);
}

void StepGraph::turn_off(const std::string& why) {
  off_ = true;
  off_reason_ = why;
  log_ << "note: CUDA graph off, training on with eager steps: " << why << "\n";
}

void StepGraph::drop_graph() {
  if (graph_.valid()) {
    cuda::synchronize();  // no replay in flight uses the pool when it is handed back
    graph_.reset();
  }
  if (pool_) {
    CachingAllocator::of(in_x_.device()).release_graph_pool();
    pool_ = false;
  }
}

uint64_t* StepGraph::offset_word() const {
  return reinterpret_cast<uint64_t*>(offset_.data<int64_t>());
}

void StepGraph::store_scalars(float lr, bool offset) {
  // Kernel launches on the engine stream: ordered before the replay, no sync.
  if (lr != stored_lr_) {
    lr_.fill_(lr);
    stored_lr_ = lr;
  }
  if (offset) gen_.store_offset(offset_word());
}

void StepGraph::inputs(const Tensor& x, const Tensor& y) {
  if (!in_x_.defined() || in_x_.shape() != x.shape() || in_x_.dtype() != x.dtype() ||
      in_y_.shape() != y.shape() || in_y_.dtype() != y.dtype()) {
    // A new batch shape (never within a run today): start over, warm-up included.
    drop_graph();
    warm_ = 0;
    in_x_ = Tensor::empty(x.shape(), x.device(), x.dtype());
    in_y_ = Tensor::empty(y.shape(), y.device(), y.dtype());
    loss_ = Tensor::empty({}, x.device(), DType::F32);
    correct_ = Tensor::empty({}, x.device(), DType::I32);
    lr_ = Tensor::empty({}, x.device(), DType::F32);
    offset_ = Tensor::empty({}, x.device(), DType::I64);
    stored_lr_ = -1.0f;
  }
  in_x_.copy_(x);  // stream-ordered device copies: no sync
  in_y_.copy_(y);
}

bool StepGraph::capture(const Body& body, float lr) {
  const HostState before = save();
  store_scalars(lr, true);  // what this step's launch right after the capture reads
  opt_.read_lr_from(lr_);
  gen_.capture_offsets(offset_word());
  CachingAllocator& alloc = CachingAllocator::of(in_x_.device());
  std::string failure;
  cuda::Graph graph;
  alloc.begin_graph_capture();
  pool_ = true;
  try {
    cuda::begin_capture();
    try {
      const std::string hook = test_failure();
      if (hook == "sync") cuda::synchronize();
      if (hook == "alloc") Tensor::empty({int64_t{1} << 26}, in_x_.device());
      body(in_x_, in_y_, loss_, correct_);
      graph = cuda::end_capture();
    } catch (...) {
      cuda::abort_capture();
      throw;
    }
  } catch (const std::exception& e) {
    failure = first_line(e.what());
  }
  alloc.end_graph_capture();
  opt_.read_lr_from(Tensor());
  gen_.capture_offsets(nullptr);
  const HostState after = save();
  if (failure.empty() && after.opt.steps != before.opt.steps + 1)
    failure = "the captured step did not count one optimizer step";
  if (!failure.empty()) {
    graph.reset();
    restore(before);
    alloc.release_graph_pool();
    pool_ = false;
    turn_off("the capture failed: " + failure);
    return false;
  }
  counter_step_.assign(counters_.size(), 0);
  for (std::size_t i = 0; i < counters_.size(); ++i)
    counter_step_[i] = after.counters[i] - before.counters[i];
  gen_step_ = after.gen_offset - before.gen_offset;
  graph_ = std::move(graph);
  ++captures_;
  graph_.launch();  // this step's work; its host side ran during the capture
  return true;
}

void StepGraph::replay(float lr) {
  store_scalars(lr, gen_step_ > 0);
  graph_.launch();
  ++replays_;
  opt_.count_replayed_step();
  for (std::size_t i = 0; i < counters_.size(); ++i)
    counters_[i].host<int64_t>()[0] += counter_step_[i];
  gen_.set_state(gen_.seed(), gen_.offset() + gen_step_);  // the streams the replay drew
}

void StepGraph::step(const Tensor& x, const Tensor& y, float lr, const Body& body,
                     const Tensor& loss_slot, const Tensor& correct_slot) {
  inputs(x, y);
  if (graph_.valid()) {
    replay(lr);
  } else if (!off_ && warm_ >= kWarmupSteps && !opt_.host_state().fresh_buffer) {
    if (!capture(body, lr)) body(in_x_, in_y_, loss_, correct_);
  } else {
    body(in_x_, in_y_, loss_, correct_);
    ++warm_;
  }
  Tensor(loss_slot).copy_(loss_);
  Tensor(correct_slot).copy_(correct_);
}

}  // namespace scratchnet::train
