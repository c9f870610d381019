#pragma once

namespace scratchnet::tools {

// Parses and runs one subcommand; returns the process exit code
// (0 success, 1 runtime failure, 2 bad usage).
int run_cli(int argc, char** argv);

}  // namespace scratchnet::tools
