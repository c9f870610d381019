// The training step as one CUDA graph (issue 12, part 4): after warm-up the
// whole step (zero_grad, forward, loss, backward, the SGD step, and the copies
// of the loss and correct-count out) is captured once from the engine stream
// and replayed with one cudaGraphLaunch per batch.
//
// What a replay needs, and how each is met:
//   - inputs: a graph reads fixed addresses, so every full batch is copied
//     into the graph's input buffers (x, y) first; the warm-up steps already
//     run through the same buffers, so the allocator's cache is exactly the
//     captured step's (no cudaMalloc inside the capture).
//   - memory: blocks handed out during the capture stay the graph's until it
//     is destroyed (CachingAllocator::begin_graph_capture), so nothing
//     allocated between replays (batches, the test pass) overlaps them.
//   - per-step host values, which a kernel argument would freeze at the
//     captured value, live in two device scalars that the graph's kernels
//     read when they run; before each replay the host writes them with a
//     one-thread kernel launch on the engine stream (outside the graph, no
//     sync):
//       learning rate: the SGD kernel reads it from lr_ (SGD::read_lr_from
//         during the capture), so every schedule (step, cosine, warm-up)
//         replays the one graph at each step's own rate.
//       dropout's stream offsets: drawn from the Generator per call; during
//         the capture each CUDA dropout takes its offset as *offset_ + its
//         distance from the step's first draw (Generator::capture_offsets),
//         and a replay stores the generator's offset there first and then
//         advances it by the step's draws, so every replay draws fresh masks,
//         exactly the eager step's (same seed, same offsets).
//       first_step of momentum SGD: never captured (warm-up steps come first).
//   - host-side counters that a step advances (the optimizer's step count,
//     batch norm's num_batches_tracked, any int64 CPU buffer): their change
//     during the capture is undone if the capture fails and applied again
//     after every replay.
//   - metrics: the step's loss and correct-count are written by the graph
//     into fixed buffers and copied into the epoch's per-batch slots after
//     each replay.
// Steps that run eagerly: warm-up (the first kWarmupSteps full batches), the
// last, smaller batch of an epoch, and steps after a failed capture; and
// every step with --no-cuda-graph, on the CPU, and with several ranks (the
// gradient all-reduce runs between backward and the SGD step through MPI on
// the host).
//
// What still prevents a capture: a host sync or cudaMalloc inside the step,
// a call the stream capture does not support, several ranks, the CPU. Not
// checked, so kept out of steps: random draws other than CUDA dropout's (a
// host draw feeding a kernel argument would be frozen; none today) and a
// dropout drawing from another Generator than the one given here.
//
// A failed capture (anything that throws inside it: an allocation the cache
// cannot serve, a host sync, an unsupported call) is undone: the stream
// stops capturing, the error is cleared, the host state restored, and the
// step runs eagerly; the log gets one line saying why, and the run goes on
// without graphs. SCRATCHNET_GRAPH_TEST_FAIL=sync|alloc makes the capture
// fail that way on purpose (tests).
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "core/cuda.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "layers/module.h"
#include "train/optimizer.h"

namespace scratchnet::train {

class StepGraph {
 public:
  // Eager full-batch steps before the capture: the first takes the caching
  // allocator to its steady state, the second proves it (and ends momentum
  // SGD's first step).
  static constexpr int kWarmupSteps = 2;

  // The step: zero_grad, forward, loss, backward, SGD step; writes the loss
  // (0-d F32) and the correct count (0-d I32) into the tensors given.
  using Body = std::function<void(const Tensor& x, const Tensor& y, const Tensor& loss_out,
                                  const Tensor& correct_out)>;

  // `enabled`: the run may use graphs at all (CUDA, one rank, no
  // --no-cuda-graph). Notices go to `log`.
  StepGraph(bool enabled, Module& model, SGD& opt, Generator& gen, std::ostream& log);
  ~StepGraph();  // the graph first, then its memory pool
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Whether full batches go through step() (else the caller runs them eagerly).
  bool active() const { return enabled_ && !off_; }

  // One full-batch step at learning rate `lr` (already set on the
  // optimizer): replayed, captured and launched, or run eagerly through the
  // graph's input buffers. The loss and correct count end in loss_slot and
  // correct_slot (views into the epoch's per-batch arrays).
  void step(const Tensor& x, const Tensor& y, float lr, const Body& body, const Tensor& loss_slot,
            const Tensor& correct_slot);

  // For tests and the log: graphs captured / replays so far, and why graphs
  // went off (empty while they are on).
  int captures() const { return captures_; }
  int64_t replays() const { return replays_; }
  const std::string& off_reason() const { return off_reason_; }

 private:
  struct HostState {
    SGD::HostState opt;
    std::vector<int64_t> counters;  // the model's int64 CPU buffers
    uint64_t gen_offset = 0;
  };
  HostState save() const;
  void restore(const HostState& s);
  void inputs(const Tensor& x, const Tensor& y);
  bool capture(const Body& body, float lr);  // false: failed, graphs are off now
  void replay(float lr);
  // Writes the step's rate into lr_ (when it changed) and, with `offset`, the
  // generator's offset into offset_: stream-ordered launches.
  void store_scalars(float lr, bool offset);
  uint64_t* offset_word() const;
  void drop_graph();
  void turn_off(const std::string& why);

  bool enabled_;
  bool off_ = false;
  Module& model_;
  SGD& opt_;
  Generator& gen_;
  std::ostream& log_;
  std::vector<Tensor> counters_;       // the int64 CPU buffers (num_batches_tracked)
  std::vector<int64_t> counter_step_;  // how much a step advances each
  Tensor in_x_, in_y_, loss_, correct_;
  Tensor lr_, offset_;       // 0-d F32, I64 on the device: the replay's rate and first offset
  float stored_lr_ = -1.0f;  // what lr_ holds (rates are > 0)
  uint64_t gen_step_ = 0;    // the streams one step draws (its dropout calls)
  cuda::Graph graph_;
  bool pool_ = false;  // the allocator holds a graph pool
  int warm_ = 0;
  int captures_ = 0;
  int64_t replays_ = 0;
  std::string off_reason_;
};

}  // namespace scratchnet::train
