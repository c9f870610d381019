#include "tools/cli.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <new>

#include "core/text.h"
#include "kernels/cpu/threads.h"
#include "models/models.h"
#include "tools/bench.h"
#include "tools/commands.h"
#include "tools/suggest.h"
#include "train/import_d2l.h"
#include "train/safetensors.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace scratchnet::tools {

namespace {

// One line on stderr, whatever the message holds.
int fail(const std::string& message, int code) {
  std::string line = message;
  for (char& ch : line)
    if (ch == '\n' || ch == '\r') ch = ' ';
  if (dist::active()) {
    // One rank failed: say which, then end every rank (the others may be
    // waiting for this one in a collective).
    std::cerr << "error (rank " << dist::rank() << " of " << dist::size() << "): " << line
              << "\n";
    std::cerr.flush();
    dist::abort_all(code);
  }
  std::cerr << "error: " << line << "\n";
  return code;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

CLI::Validator device_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s == "auto" || s == "cpu" || s == "cuda") return {};
        if (s.rfind("cuda:", 0) == 0 && s.size() > 5 &&
            s.find_first_not_of("0123456789", 5) == std::string::npos)
          return {};
        return "device must be auto, cpu, cuda or cuda:N, got '" + s + "'";
      },
      "auto|cpu|cuda[:N]");
}

CLI::Validator model_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        for (const auto& n : models::names())
          if (n == s) return {};
        return "unknown model '" + s + "'; choose one of: " + join(models::names());
      },
      "{" +
          [] {
            std::string s;
            for (const auto& n : models::names()) s += (s.empty() ? "" : ",") + n;
            return s;
          }() +
          "}");
}

CLI::Validator unit_interval_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          std::size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && v >= 0.0 && v < 1.0) return {};
        } catch (const std::exception&) {
        }
        return "value must be a number in [0, 1), got '" + s + "'";
      },
      "in [0, 1)");
}

namespace {

CLI::Validator number_at_least(double lo, bool strict, const std::string& name) {
  return CLI::Validator(
      [lo, strict](std::string& s) -> std::string {
        try {
          std::size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && (strict ? v > lo : v >= lo)) return {};
        } catch (const std::exception&) {
        }
        return std::string("value must be a number ") + (strict ? "> " : ">= ") +
               std::to_string(static_cast<int>(lo)) + ", got '" + s + "'";
      },
      name);
}

}  // namespace

CLI::Validator integer_in(int64_t lo, int64_t hi) {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& s) -> std::string {
        if (parse_integer(s, lo, hi)) return {};
        return "value must be an integer in " + range + ", got '" + s + "'";
      },
      "INT in " + range);
}

CLI::Validator unsigned_64() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (parse_unsigned(s)) return {};
        return "value must be an integer in 0..18446744073709551615, got '" + s + "'";
      },
      "UINT64");
}

CLI::Validator positive() {
  return number_at_least(0.0, true, "POSITIVE");
}
CLI::Validator non_negative() {
  return number_at_least(0.0, false, "NONNEGATIVE");
}

void check_model_args(const std::string& model, int image_size, int width_divisor) {
  if (width_divisor != 1 && model.rfind("vgg", 0) != 0)
    throw UsageError("--width-divisor applies to the VGG models only, not to " + model);
  try {
    models::check_input_size(model, image_size);
  } catch (const ValueError& e) {
    throw UsageError(e.what());
  }
}

void add_threads_option(CLI::App& cmd) {
  cmd.add_option_function<int>(
         "--threads", [](const int& n) { kernels::set_cpu_threads(n); },
         "CPU threads for the kernels (default: one per core, " +
             std::to_string(kernels::cpu_threads()) +
             " here); idle threads sleep rather than spin unless OMP_WAIT_POLICY says otherwise")
      ->check(positive());
}

void add_checkpoint_size_options(CLI::App& cmd, int& image_size, int& width_divisor) {
  cmd.add_option("--resize", image_size,
                 "Input size (default: the one recorded in the checkpoint, else the model's)")
      ->check(integer_in(1, 4096));
  cmd.add_option("--width-divisor", width_divisor,
                 "Channel divisor the model was trained with (default: from the checkpoint)")
      ->check(integer_in(1, 4096));
}

std::string weights_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return path;
  const auto model = std::filesystem::path(path) / train::kModelFileName;
  const auto state = std::filesystem::path(path) / train::kStateFileName;
  // A run cut short before its first export still has its weights in the state.
  if (!std::filesystem::exists(model, ec) && std::filesystem::exists(state, ec))
    return state.string();
  return model.string();
}

LoadedModel load_trained_model(const std::string& model_name, const std::string& weights_path,
                               int image_size, int width_divisor, Device device) {
  const std::string weights = weights_file(weights_path);
  safetensors::File file = safetensors::load(weights);
  auto meta_int = [&](const char* key) -> int {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) return 0;
    if (const auto v = parse_integer(it->second, 1, 4096)) return static_cast<int>(*v);
    throw IoError(weights + ": metadata \"" + key + "\" is not an integer in 1..4096: \"" +
                  escape_bytes(it->second) + "\"");
  };
  auto it = file.metadata.find("model");
  if (it != file.metadata.end() && it->second != model_name)
    throw ValueError(weights + " holds a " + escape_bytes(it->second) + ", not a " + model_name +
                     " (pass --model " + escape_bytes(it->second) + ")");
  // A run's train_state.safetensors holds the weights too, under "model.".
  const auto format = file.metadata.find("format");
  if (format != file.metadata.end() && format->second == "scratchnet-train-state") {
    safetensors::File inner;
    inner.metadata = file.metadata;
    const std::string prefix = "model.";
    for (auto& t : file.tensors)
      if (t.name.rfind(prefix, 0) == 0)
        inner.tensors.push_back({t.name.substr(prefix.size()), t.tensor});
    if (inner.tensors.empty())
      throw IoError(weights + " holds the optimizer state of a run, not its weights; pass the " +
                    train::kModelFileName + " beside it (or the run directory)");
    file = std::move(inner);
  }
  if (image_size == 0) image_size = meta_int("image_size");
  if (image_size == 0) image_size = models::defaults(model_name).image_size;
  if (width_divisor == 0) width_divisor = meta_int("width_divisor");
  if (width_divisor == 0) width_divisor = 1;
  check_model_args(model_name, image_size, width_divisor);
  safetensors::require_finite(file, weights);

  LoadedModel out;
  out.gen = std::make_unique<Generator>(0);
  out.model = models::make(model_name, *out.gen, width_divisor);
  out.model->to(device);
  // d2l's nn.Sequential keys ("0.weight") are mapped onto ours by position.
  file = safetensors::adopt_sequential_keys(*out.model, std::move(file), weights);
  safetensors::load_into(*out.model, file, weights);
  out.model->eval();
  out.image_size = image_size;
  return out;
}

std::string version_text() {
#if defined(SCRATCHNET_CUDA_EMULATED)
  const char* cuda = "CUDA kernels compiled for the CPU emulator (no GPU used)";
#elif defined(SCRATCHNET_WITH_CUDA)
  const char* cuda = "CUDA kernels compiled in";
#else
  const char* cuda = "CPU only (built without CUDA)";
#endif
#ifndef SCRATCHNET_GIT_COMMIT
#define SCRATCHNET_GIT_COMMIT "unknown"
#endif
  const std::string mpi = !dist::compiled()      ? "no MPI"
                          : dist::nccl_compiled() ? "MPI with NCCL"
                                                  : "MPI (no NCCL)";
  return std::string("scratchnet ") + SCRATCHNET_VERSION + " (commit " + SCRATCHNET_GIT_COMMIT +
         " at configure time; " + cuda + "; " + mpi + "; " +
         std::to_string(kernels::cpu_threads()) + " CPU threads)";
}

namespace {

std::string did_you_mean(const std::string& typed, const std::vector<std::string>& names) {
  const std::string c = closest(typed, names);
  return c.empty() ? "" : "; did you mean " + c + "?";
}

// Names CLI11 would only call "not expected" (or "a subcommand is required"):
// an unknown subcommand or flag gets a UsageError with the closest name.
CLI::App* find_command(CLI::App& app, const std::string& name) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  return nullptr;
}

void check_names(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    commands.push_back(sub->get_name());
  std::string list;
  for (const auto& c : commands) list += (list.empty() ? "" : ", ") + c;
  if (args.empty()) throw UsageError("a command is required: " + list + " (or help)");
  const std::string& first = args[0];
  if (first.rfind("-", 0) == 0) {
    const std::string name = first.substr(0, first.find('='));
    if (name != "--help" && name != "-h" && name != "--version")
      throw UsageError("unknown option " + name + did_you_mean(name, {"--help", "--version"}) +
                       " (commands: " + list + ", help)");
    return;
  }
  CLI::App* cmd = find_command(app, first);
  if (cmd == nullptr) {
    std::vector<std::string> with_help = commands;
    with_help.push_back("help");
    throw UsageError("unknown command '" + first + "'" + did_you_mean(first, with_help) +
                     " (commands: " + list + ", help)");
  }
  std::vector<std::string> flags = {"--help"};
  for (const CLI::Option* o : cmd->get_options())
    for (const auto& ln : o->get_lnames()) flags.push_back("--" + ln);
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--") break;
    if (args[i].rfind("--", 0) != 0) continue;
    const std::string name = args[i].substr(0, args[i].find('='));
    if (std::find(flags.begin(), flags.end(), name) != flags.end()) continue;
    throw UsageError("unknown option " + name + " for " + first + did_you_mean(name, flags) +
                     " (see scratchnet " + first + " --help)");
  }
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "scratchnet: a from-scratch deep learning engine (C++17 / CUDA) that trains LeNet, "
      "AlexNet, VGG and ResNet on Fashion-MNIST"};
  app.name("scratchnet");
  app.require_subcommand(1);
  add_train_command(app);
  add_eval_command(app);
  add_predict_command(app);
  add_summary_command(app);
  add_bench_command(app);
  app.set_version_flag("--version", version_text(),
                       "Print the version, the git commit and whether "
                       "CUDA and MPI were compiled in");
  app.footer(
      "Commands: train, eval, predict, summary, bench; 'scratchnet help COMMAND' or "
      "'scratchnet COMMAND --help' for their options.");
  const std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  try {
    if (!args.empty() && args[0] == "help") {
      // `scratchnet help` and `scratchnet help train`, as git and pip have them.
      CLI::App* cmd = args.size() > 1 ? find_command(app, args[1]) : nullptr;
      if (args.size() > 1 && cmd == nullptr)
        throw UsageError("help: unknown command '" + args[1] + "'" +
                         did_you_mean(args[1], {"train", "eval", "predict", "summary", "bench"}));
      std::cout << (cmd ? cmd->help() : app.help());
      return 0;
    }
    check_names(app, args);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const UsageError& e) {
    if (dist::active()) return fail(e.what(), 2);
    std::cerr << "error: " << e.what() << "\nRun with --help for more information.\n";
    return 2;
  } catch (const train::Interrupted& e) {
    return fail(e.what(), 130);
  } catch (const Error& e) {
    return fail(e.what(), 1);
  } catch (const std::bad_alloc&) {
    return fail("out of host memory (try a smaller --batch-size or --resize)", 1);
  } catch (const std::exception& e) {
    return fail(std::string("internal error: ") + e.what(), 1);
  }
  return 0;
}

}  // namespace scratchnet::tools
