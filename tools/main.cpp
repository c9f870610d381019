// scratchnet: the command line. Subcommands live in tools/*_cmd.cpp; run_cli
// maps every failure to an exit code and a one-line message.
#include "tools/cli.h"

int main(int argc, char** argv) {
  return scratchnet::tools::run_cli(argc, argv);
}
