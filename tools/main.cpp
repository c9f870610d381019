// scratchnet: the command line. Subcommands live in tools/*_cmd.cpp; run_cli
// maps every failure to an exit code and a one-line message.
#include <unistd.h>

#include <cstdlib>

#include "tools/cli.h"

namespace {

// OpenMP reads OMP_WAIT_POLICY when its runtime loads, before main(): setting
// it here would be too late for this process, so the binary runs itself
// again once with the variable set (see kernels/cpu/threads.h for why
// passive waiting is the default). A policy the user set is kept; if the
// re-exec fails the program simply continues with the runtime's default.
void wait_passively_unless_told_otherwise(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (::setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
}

}  // namespace

int main(int argc, char** argv) {
  wait_passively_unless_told_otherwise(argv);
  return scratchnet::tools::run_cli(argc, argv);
}
