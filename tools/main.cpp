// scratchnet: the command line. Subcommands live in tools/*.cpp.
#include "tools/cli.h"

int main(int argc, char** argv) { return scratchnet::tools::run_cli(argc, argv); }
