// The `scratchnet bench` subcommand: flags, mode selection, output.
//
// Mode: kernel mode times single kernels (the default, and whenever --op or
// --shape is given); model-step mode times whole training steps and is
// chosen by --mode step, or by naming models with --model and no --op.
#include "tools/bench.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "core/device.h"
#include "core/error.h"
#include "models/models.h"
#include "tools/bench_modes.h"
#include "tools/cli.h"
#include "train/atomic_file.h"
#include "train/metrics.h"

namespace scratchnet::tools {

namespace bench {

namespace {

std::vector<int> parse_ints(const std::string& spec, const std::string& list, std::size_t min_n,
                            std::size_t max_n, const std::string& form) {
  std::vector<int> v;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      const int x = std::stoi(item, &used);
      if (used != item.size() || x <= 0) throw std::invalid_argument(item);
      v.push_back(x);
    } catch (const std::exception&) {
      throw ValueError("bench: --shape '" + spec + "': '" + item +
                       "' is not a positive integer; expected " + form);
    }
  }
  if (v.size() < min_n || v.size() > max_n)
    throw ValueError("bench: --shape '" + spec + "' has " + std::to_string(v.size()) +
                     " numbers; expected " + form);
  return v;
}

}  // namespace

bool parse_shape(const std::string& spec, LayerShape& l, int mnk[3]) {
  namespace k = scratchnet::kernels;
  const auto colon = spec.find(':');
  const std::string op = spec.substr(0, colon);
  const std::string args = colon == std::string::npos ? "" : spec.substr(colon + 1);
  l = LayerShape();
  l.model = "-";
  l.layer = "custom";
  auto ints = [&](std::size_t lo, std::size_t hi, const char* form) {
    return parse_ints(spec, args, lo, hi, std::string(op) + ":" + form);
  };
  if (op == "gemm") {
    const auto v = ints(3, 3, "M,N,K");
    mnk[0] = v[0], mnk[1] = v[1], mnk[2] = v[2];
    return false;
  }
  if (op == "conv2d") {
    const auto v = ints(6, 8, "N,C,H,W,K,R[,stride[,pad]]");
    l.kind = Kind::Conv;
    l.conv = k::conv2d_params(v[0], v[1], v[2], v[3], v[4], v[5], v[5], v.size() > 6 ? v[6] : 1,
                              v.size() > 7 ? v[7] : 0);
  } else if (op == "linear") {
    const auto v = ints(3, 3, "N,IN,OUT");
    l.kind = Kind::Linear;
    l.linear = k::linear_params(v[0], v[1], v[2]);
  } else if (op == "maxpool" || op == "avgpool") {
    const auto v = ints(6, 7, "N,C,H,W,R,stride[,pad]");
    l.kind = op == "maxpool" ? Kind::MaxPool : Kind::AvgPool;
    l.pool = k::pool2d_params(op == "maxpool" ? "max_pool2d" : "avg_pool2d", v[0], v[1], v[2], v[3],
                              v[4], v[4], v[5], v.size() > 6 ? v[6] : 0);
  } else if (op == "bn") {
    const auto v = ints(3, 3, "N,C,HW");
    l.kind = Kind::BatchNorm;
    l.bn = k::batch_norm_params(v[0], v[1], v[2], 1e-5f, 0.1f);
  } else if (op == "ce") {
    const auto v = ints(2, 2, "N,classes");
    l.kind = Kind::CrossEntropy;
    l.n = v[0], l.hw = v[1];
  } else if (op == "relu" || op == "sigmoid" || op == "add" || op == "dropout" || op == "sgd") {
    const auto v = ints(1, 1, "n");
    l.kind = op == "relu"      ? Kind::ReLU
             : op == "sigmoid" ? Kind::Sigmoid
             : op == "add"     ? Kind::Add
             : op == "dropout" ? Kind::Dropout
                               : Kind::Sgd;
    l.n = v[0];
  } else {
    throw ValueError("bench: --shape '" + spec + "': unknown op '" + op +
                     "'; use gemm, conv2d, linear, maxpool, avgpool, bn, ce, relu, sigmoid, add, "
                     "dropout or sgd");
  }
  return true;
}

}  // namespace bench

namespace {

struct BenchFlags {
  std::string device = "auto", mode = "auto", format = "table", out;
  std::vector<std::string> ops, models, shapes;
  int batch = 0, image_size = 0, width_divisor = 1, repeats = 10, warmup = 3, steps = 10, top = 15;
  bool no_validate = false, no_profile = false, square_gemm = false;
};

std::vector<std::string> model_choices() {
  std::vector<std::string> v = {"all"};
  for (const auto& m : bench::bench_models()) v.push_back(m.name);
  for (const auto& m : models::names())
    if (std::find(v.begin(), v.end(), m) == v.end()) v.push_back(m);
  return v;
}

void write_output(const std::string& text, const std::string& path) {
  if (path.empty()) {
    std::cout << text << std::flush;
    return;
  }
  write_file_atomically(path, text);
}

// Progress on stderr, so that stdout stays the report: redrawn in place on a
// terminal, one line per measurement otherwise.
std::function<void(const std::string&, int, int)> stderr_progress() {
  const bool tty = train::is_terminal(STDERR_FILENO);
  return [tty](const std::string& what, int done, int total) {
    char head[48];
    std::snprintf(head, sizeof head, "bench [%d/%d] ", done, total);
    std::string line = head + what;
    if (!tty) {
      std::cerr << line << "\n";
      return;
    }
    const int room = train::terminal_columns(STDERR_FILENO) - 1;
    if (room > 0 && static_cast<int>(line.size()) > room) line.resize(std::size_t(room));
    std::cerr << "\r\033[K" << line << (done == total ? "\r\033[K" : "") << std::flush;
  };
}

void run(const BenchFlags& f) {
  const Device device = parse_device(f.device);
  const auto progress = stderr_progress();
  const bool step_mode = f.mode == "step" || (f.mode == "auto" && f.ops.empty() &&
                                              f.shapes.empty() && !f.models.empty());
  std::ostringstream os;
  if (step_mode) {
    std::vector<std::string> names = f.models;
    if (names.empty() || std::find(names.begin(), names.end(), "all") != names.end()) {
      names.clear();
      for (const auto& m : bench::bench_models()) names.push_back(m.name);
    }
    int done = 0;
    for (const auto& name : names) {
      progress("training steps of " + name, done++, static_cast<int>(names.size()));
      bench::StepOptions o;
      o.device = device, o.model = name, o.batch = f.batch, o.image_size = f.image_size;
      o.width_divisor = f.width_divisor;
      o.steps = f.steps, o.warmup = f.warmup, o.profile = !f.no_profile;
      bench::write_step_report(bench::run_step_bench(o), f.format, f.top, os);
      if (f.format != "json" && names.size() > 1) os << "\n";
    }
    progress("done", done, done);
    write_output(os.str(), f.out);
    return;
  }
  bench::KernelOptions o;
  o.device = device;
  if (!f.ops.empty()) o.ops = f.ops;
  if (!f.models.empty()) {
    o.models = f.models;
  } else if (device.is_cpu() && f.shapes.empty()) {
    // Every model's layers take minutes on a CPU; LeNet's take seconds.
    o.models = {"lenet"};
    std::cerr << "bench: on the CPU the kernel mode defaults to LeNet's layers (--model all for "
                 "every model)\n";
  }
  o.shapes = f.shapes, o.batch = f.batch, o.image_size = f.image_size;
  o.warmup = f.warmup, o.repeats = f.repeats, o.validate = !f.no_validate;
  o.width_divisor = f.width_divisor, o.square_gemm = f.square_gemm;
  o.progress = progress;
  const bench::KernelReport r = bench::run_kernel_bench(o);
  progress("done", 1, 1);
  bench::write_kernel_report(r, f.format, os);
  write_output(os.str(), f.out);
  int failed = 0;
  for (const auto& row : r.rows) failed += row.check.rfind("FAIL", 0) == 0;
  if (failed)
    throw ValueError("bench: " + std::to_string(failed) +
                     " timed rows failed validation against the CPU reference (see their check "
                     "column): the kernel is wrong for that shape, its timing is meaningless");
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the kernels on the course models' layer shapes, or whole training steps");
  cmd->add_option("--device", flags->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_option("--mode", flags->mode,
                  "kernels, step, or auto (step when --model is given without --op/--shape)")
      ->check(CLI::IsMember({"auto", "kernels", "step"}))
      ->capture_default_str();
  cmd->add_option("--op", flags->ops, "kernel mode: ops to time (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember({"all", "gemm", "conv2d", "linear", "pool", "maxpool", "avgpool", "gap",
                             "bn", "relu", "sigmoid", "add", "dropout", "ce", "sgd"}));
  cmd->add_option("--model", flags->models, "models (comma-separated) or all")
      ->delimiter(',')
      ->check(CLI::IsMember(model_choices()));
  cmd->add_option("--shape", flags->shapes,
                  "kernel mode: custom shapes instead of the models, e.g. gemm:4096,4096,4096 "
                  "conv2d:N,C,H,W,K,R[,stride[,pad]] linear:N,IN,OUT relu:n");
  cmd->add_option("--batch-size", flags->batch, "batch size (default: the course's per model)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--resize", flags->image_size,
                  "input side in pixels, as train's --resize (default: the course's per model)")
      ->check(positive());
  // The flag's old name, kept working but out of the help.
  cmd->add_option("--image-size", flags->image_size)->check(positive())->group("");
  cmd->add_option("--width-divisor", flags->width_divisor,
                  "divide VGG's channel counts, as train's --width-divisor")
      ->check(positive())
      ->capture_default_str();
  add_threads_option(*cmd);
  cmd->add_flag("--square-gemm", flags->square_gemm,
                "kernel mode: also time a 4096^3 GEMM (minutes on a CPU; the GPU's cuBLAS "
                "ceiling uses it regardless)");
  cmd->add_option("--repeats", flags->repeats, "kernel mode: timed repeats per configuration")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--warmup", flags->warmup, "untimed runs before timing")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_option("--steps", flags->steps, "model-step mode: timed steps")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--top", flags->top, "model-step mode: rows of the per-layer profiles")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_option("--format", flags->format, "table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  cmd->add_option("--out", flags->out, "write the result to FILE instead of stdout");
  cmd->add_flag("--no-validate", flags->no_validate, "kernel mode: skip the check against the CPU");
  cmd->add_flag("--no-profile", flags->no_profile, "model-step mode: skip the per-node profile");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace scratchnet::tools
