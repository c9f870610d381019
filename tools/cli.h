// The `scratchnet` command line: CLI11 subcommands (train, eval, predict,
// summary, bench), and the pieces they share.
//
// Exit codes: 0 success; 2 bad usage (parse and validation errors, unknown
// model, bad numbers, an image size the model cannot take); 1 a runtime
// failure (scratchnet::Error: a missing file, a device problem, divergence),
// printed as one line "error: <message>" on stderr; 130 after Ctrl-C.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "core/device.h"
#include "core/error.h"
#include "core/rng.h"
#include "layers/module.h"

namespace scratchnet::tools {

// "scratchnet 0.1.0 (commit 1a2b3c4 at configure time; CUDA kernels compiled
// in; 2 CPU threads)", for --version.
std::string version_text();

// Parses and runs one subcommand; returns the process exit code. Besides the
// subcommands: `help [COMMAND]`, `--version`, and "did you mean" for a
// mistyped command or flag.
int run_cli(int argc, char** argv);

// A mistake in the arguments found after parsing (exit 2).
class UsageError : public Error {
 public:
  using Error::Error;
};

// Accepts auto, cpu, cuda and cuda:N.
CLI::Validator device_validator();
// A member of models::names(), listing them when it is not.
CLI::Validator model_validator();
// 0 <= x < 1.
CLI::Validator unit_interval_validator();
// x > 0 and x >= 0, with messages that say so (CLI11's name a huge range).
CLI::Validator positive();
CLI::Validator non_negative();

// models::check_input_size, its ValueError turned into a UsageError, and
// width_divisor != 1 for a model that has no such knob (only VGG has).
void check_model_args(const std::string& model, int image_size, int width_divisor);

// --threads N: the CPU kernels' thread count (kernels::set_cpu_threads),
// applied as soon as it is parsed. Default: one per core.
void add_threads_option(CLI::App& cmd);

// --resize and --width-divisor for a command that runs trained weights (eval,
// predict). Both stay 0 unless given: load_trained_model then takes them from
// the checkpoint.
void add_checkpoint_size_options(CLI::App& cmd, int& image_size, int& width_divisor);

// A model with trained weights, ready for inference on `device`.
struct LoadedModel {
  std::unique_ptr<Generator> gen;  // outlives the model (dropout layers point at it)
  std::shared_ptr<Module> model;
  int image_size = 0;
};
// Builds `model_name` and loads `weights` (a safetensors file) into it. When
// image_size / width_divisor are 0, they come from the checkpoint's metadata
// (a scratchnet run records them) or else the model's defaults. ValueError
// when the file says it holds another model; IoError for a bad file.
LoadedModel load_trained_model(const std::string& model_name, const std::string& weights,
                               int image_size, int width_divisor, Device device);

}  // namespace scratchnet::tools
