// `scratchnet bench`: kernel timings on the course models' layer shapes
// against measured ceilings, and the full training step of a model.
// tools/cli.cpp registers it; see BENCHMARKS.md for what it prints.
#pragma once
#include <CLI/CLI.hpp>

namespace scratchnet::tools {

// Adds the `bench` subcommand with its flags and a callback that runs it.
// Failures throw scratchnet::Error kinds (the CLI prints them and exits 1);
// bad flag values are CLI11 validation errors (exit 2).
void add_bench_command(CLI::App& app);

}  // namespace scratchnet::tools
