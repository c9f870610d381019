// The rows `scratchnet bench` measures and how they are printed: an aligned
// table for people, csv for spreadsheets, json for scripts
// (tools/bench_vs_torch.sh reads the json of the model-step mode).
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "tools/bench_timer.h"

namespace scratchnet::tools::bench {

// One timed configuration of the kernel mode.
struct Row {
  std::string op, pass, model, layer, shape;  // pass: fwd, bwd_data, bwd_weight, bwd
  int count = 1;                              // layers of the model with this shape
  double flops = 0;                           // per call; rows with flops report GFLOP/s
  double bytes = 0;  // minimal DRAM traffic per call; rows without flops report GB/s
  Stats t;
  double ceiling_pct = -1;  // rate / measured ceiling (GEMM rate or copy bandwidth), %
  // A byte-rate row whose working set fits in a last-level cache larger than
  // the timer's flush: it may run from cache, so its % of the DRAM copy
  // ceiling can pass 100 and is no DRAM efficiency.
  bool cache_resident = false;
  double cublas_ms = -1;     // cuBLAS strict FP32 on the same GEMM shape (GPU), median ms
  std::string check;         // what the validation before timing found
  double rate() const;       // GFLOP/s or GB/s
  const char* unit() const;  // "GFLOP/s" or "GB/s"
};

// A ceiling measured in the same run.
struct Ceiling {
  std::string name;  // "copy bandwidth (read+write)", "cuBLAS SGEMM FP32 4096^3", ...
  double value = 0;  // in `unit`
  std::string unit;  // "GB/s" or "GFLOP/s"
  Stats t;
};

struct KernelReport {
  std::string device, device_name;
  double llc_mib = 0, flush_mib = 0;  // the cache the timer flushes, and its flush
  int warmup = 0, repeats = 0;
  std::vector<Ceiling> ceilings;
  std::vector<Row> rows;
};

// Per-layer share of one profiled training step (model-step mode).
struct LayerTime {
  std::string name;  // "conv1 conv2d (256, 1, 224, 224)" (forward: layer, op, input shape) or
                     // "conv2d (256, 96, 54, 54)" (backward: node name, output shape)
  int count = 0;     // nodes aggregated under the name
  double ms = 0;     // summed over those nodes
};

struct StepReport {
  std::string device, device_name, model;
  int batch = 0, image_size = 0, steps = 0, warmup = 0;
  Stats t;  // per step
  double img_per_s = 0;
  double peak_mem_mib = 0;  // allocator's peak in use over the timed steps
  double rss_growth_mib = 0;  // process peak RSS over warm-up + steps - RSS after setup
  // Activations the autograd graph keeps between forward and backward
  // (core/autograd.h saved_memory: distinct saved storages, parameters left out).
  std::size_t saved_bytes = 0;
  // CUDA: the same step replayed as the trainer's CUDA graph (train/step_graph.h),
  // timed back to back like the eager steps; graph_note says why not when absent.
  bool graphed = false;
  Stats graph_t;  // per step
  double graph_img_per_s = 0;
  std::string graph_note;
  bool profiled = false;
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0;  // profiled step (synchronised)
  std::vector<LayerTime> forward_layers;   // each layer alone, sorted by time, longest first
  std::vector<LayerTime> backward_layers;  // per autograd node kind and shape, longest first
  std::string forward_note;
};

// format: "table", "csv" or "json" (validated by the CLI).
void write_kernel_report(const KernelReport& r, const std::string& format, std::ostream& os);
void write_step_report(const StepReport& r, const std::string& format, int top, std::ostream& os);

}  // namespace scratchnet::tools::bench
