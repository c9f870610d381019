// The emulated CUDA target's own test runner (built with SCRATCHNET_CUDA=EMULATE).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
