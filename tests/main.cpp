// The test runner: Catch2's session, plus one flag of ours.
//   --gpu-or-skip   when no CUDA GPU is usable, print why and exit 77 (ctest
//                   reports the test as skipped, never as passed).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstring>
#include <iostream>
#include <vector>

#include "core/cuda.h"

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool gpu_or_skip = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--gpu-or-skip") == 0)
      gpu_or_skip = true;
    else
      args.push_back(argv[i]);
  }
  if (gpu_or_skip && !scratchnet::cuda::available()) {
    std::cout << "SKIPPED: the [cuda] tests need a CUDA GPU and this machine has none"
              << (scratchnet::cuda::compiled() ? "" : " (and this build has no CUDA)") << "\n";
    return 77;
  }
  return Catch::Session().run(static_cast<int>(args.size()), args.data());
}
