// Resident-set growth of this process over a stretch of work, as the kernel
// counts it (issue 11: "peak memory of a step <= PyTorch's"; the PyTorch side
// of tools/bench_vs_torch_cpu.py measures itself the same way): VmRSS when the
// watch starts, then the peak (VmHWM) until it is read. The allocator's own
// peak (peak_in_use) misses what it keeps cached, malloc's arenas, thread
// stacks and kernels' scratch; this does not.
//
// start() resets the peak by writing 5 to /proc/self/clear_refs (Linux 4.0+).
// Where that is refused, VmHWM stays the whole process's peak, an upper bound
// (a transient peak of the setup counts too); hwm_reset() says which. Without
// /proc (not Linux) every figure is 0.
#pragma once

namespace scratchnet::tools::bench {

class RssWatch {
 public:
  void start();
  double start_mib() const { return start_mib_; }
  double peak_mib() const;    // VmHWM now
  double growth_mib() const;  // peak_mib() - start_mib(), never below 0
  bool hwm_reset() const { return reset_; }

 private:
  double start_mib_ = 0;
  bool reset_ = false;
};

// "VmRSS" or "VmHWM" of this process in MiB (0 when unreadable).
double proc_status_mib(const char* field);

}  // namespace scratchnet::tools::bench
