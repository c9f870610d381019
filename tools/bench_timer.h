// Timing for `scratchnet bench`: run a piece of work a few times to warm up,
// then time each repeat on its own and report the median and the spread.
//   CPU:  std::chrono::steady_clock around each call; before each timed call
//         a host buffer of twice the last-level cache (clamped to 64..128 MiB)
//         is overwritten, so rows compare with the DRAM ceiling.
//   CUDA: cudaEvents on the engine stream around each call; before each
//         timed call a buffer larger than twice the L2 cache is overwritten
//         (not timed), so no repeat finds its operands in L2 from the last.
// Model-step timing passes flush_l2 = false: a training step runs on a warm
// cache in real use, and its working set dwarfs L2 anyway.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"

struct CUevent_st;

namespace scratchnet::tools::bench {

struct Stats {
  double median = 0, min = 0, max = 0, p10 = 0, p90 = 0, mean = 0;  // milliseconds
  int repeats = 0;
};

// Order statistics of the samples (ms); p10/p90 by nearest rank.
Stats summarize(std::vector<double> samples_ms);

class Timer {
 public:
  explicit Timer(Device device);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  Stats time(int warmup, int repeats, const std::function<void()>& fn, bool flush_l2 = true);
  // n calls back to back, as a training loop runs them: on CUDA one event
  // between consecutive calls and a single sync at the end, so no call waits
  // for the previous one to finish on the host (how PyTorch's figures are
  // taken too). Each sample is the time from one event to the next.
  Stats time_sequence(int n, const std::function<void()>& fn);
  void synchronize() const;  // waits for the engine stream (no-op on CPU)
  Device device() const { return device_; }
  std::size_t l2_bytes() const { return l2_bytes_; }        // L2 (CUDA) or last-level cache (CPU)
  std::size_t flush_bytes() const { return flush_bytes_; }  // overwritten before each call

 private:
  void flush();
  Device device_;
  std::size_t l2_bytes_ = 0;
  std::unique_ptr<Storage> flush_buf_;
  std::size_t flush_bytes_ = 0;
  int flush_value_ = 0;  // a different byte each flush, so no write is elided
  CUevent_st* start_ = nullptr;
  CUevent_st* stop_ = nullptr;
};

}  // namespace scratchnet::tools::bench
