// The two modes of `scratchnet bench`, separated from the CLI so tests and
// other tools can call them. tools/bench.cpp parses the flags into these.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "tools/bench_report.h"
#include "tools/bench_shapes.h"

namespace scratchnet::tools::bench {

struct KernelOptions {
  Device device = Device::cpu();
  std::vector<std::string> ops = {"all"};     // kind names, "pool", "gemm" or "all"
  std::vector<std::string> models = {"all"};  // bench_models() names or "all"
  std::vector<std::string> shapes;            // custom "op:a,b,c" (replaces the models)
  int batch = 0, image_size = 0;              // 0: the course's values per model
  int width_divisor = 1;                      // VGG's channel divisor, as train's
  int warmup = 3, repeats = 10;
  bool validate = true;
  bool square_gemm = false;  // also time a 4096^3 GEMM (and, on a GPU, cuBLAS on it)
  // Called before each measurement (what, done so far, total): progress for
  // a person waiting; may be empty.
  std::function<void(const std::string&, int, int)> progress;
};

// Measures the ceilings, then validates and times every selected configuration.
// Rows that fail validation are reported with "FAIL" in their check column.
KernelReport run_kernel_bench(const KernelOptions& o);

// Parses a --shape spec into a layer (or, for "gemm:M,N,K", returns false and
// fills gemm_mnk). Throws ValueError naming the spec and the expected form.
bool parse_shape(const std::string& spec, LayerShape& layer, int gemm_mnk[3]);

struct StepOptions {
  Device device = Device::cpu();
  std::string model;
  int batch = 0, image_size = 0;  // 0: the model's defaults
  int width_divisor = 1;
  int steps = 10, warmup = 3;
  bool profile = true;  // one extra synchronised step, timed per node
};

StepReport run_step_bench(const StepOptions& o);

}  // namespace scratchnet::tools::bench
