// cuda:N: the process runs on the GPU it is given, or refuses with a clear
// error; never silently on another one.
#include <catch2/catch.hpp>
#include <cstdlib>

#include "core/cuda.h"
#include "core/device.h"
#include "core/error.h"
#include "core/tensor.h"
#include "test_files.h"

using namespace scratchnet;
using Catch::Matchers::Contains;

TEST_CASE("cuda:N beyond the visible GPUs is refused", "[cuda][device]") {
  const int n = cuda::device_count();
  const std::string name = "cuda:" + std::to_string(n);
  REQUIRE_THROWS_AS(parse_device(name), DeviceError);
  REQUIRE_THROWS_WITH(parse_device(name), Contains("no such GPU"));
}

TEST_CASE("one process uses one GPU: a second index is refused", "[cuda][device]") {
  Tensor t = Tensor::zeros({4}, Device::cuda(0));  // this process now uses cuda:0
  REQUIRE(cuda::current_device() == 0);
  REQUIRE_THROWS_AS(Tensor::zeros({4}, Device::cuda(1)), DeviceError);
  REQUIRE_THROWS_WITH(Tensor::zeros({4}, Device::cuda(1)), Contains("cuda:1"));
}

#ifdef SCRATCHNET_CUDA_EMULATED
TEST_CASE("training on cuda:1 runs on device 1", "[cuda][device]") {
  // The emulator pretends two devices; the child process picks the second.
  testing::TempDir dir("cuda-device");
  setenv("SCRATCHNET_EMU_DEVICES", "2", 1);
  const auto r = testing::run_binary(
      "train --model lenet --device cuda:1 --epochs 1 --train-limit 64 --test-limit 64 "
      "--batch-size 32 --out '" + dir.file("run") + "'");
  unsetenv("SCRATCHNET_EMU_DEVICES");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out + r.err, Contains("cuda:1"));
}
#endif
