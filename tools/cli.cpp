#include "tools/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "core/error.h"

namespace scratchnet::tools {

int run_cli(int argc, char** argv) {
  CLI::App app{"scratchnet: a from-scratch deep learning engine (C++17 / CUDA)"};
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return 0;
}

}  // namespace scratchnet::tools
