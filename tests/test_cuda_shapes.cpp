// [cuda] Every conv2d, linear, pooling and batch-norm layer shape of every
// model of the course, taken from the one shape table the bench uses
// (tools/bench_shapes.h, itself checked against the engine's models in
// test_bench.cpp), at batch 1 and 3: CUDA kernels against the CPU reference.
// Identical shapes are checked once per test case (VGG-16 adds few shapes to
// VGG-13). Among them: ResNet's 7x7 maps at 224 (leading dimension 49, odd
// batch strides at batch 3, and 3*49 = 147 GEMM columns: a ragged column
// tile), the 64 -> 64 conv at 224 (VGG-13/16/19), and VGG-11's first conv at
// batch 19: one long implicit GEMM whose weight gradient takes the largest
// split-K.
// Tolerance rule: see test_cuda_helpers.h. Conv, linear and pooling run on
// integer data and must equal the CPU bit for bit (rule 1), except average
// pooling's backward with a non-power-of-two window (rule 2); global average
// pooling and batch norm: rule 3.
// Cost: the emulated CUDA target runs these kernels 20-100x slower than a
// GPU runs them; the VGG shapes at 224 (about 12 GMAC per image per pass,
// distinct shapes only) are tagged [heavy] so a CI run can leave them out
// ("[cuda]~[heavy]") and run them on their own. SCRATCHNET_TEST_SMALL=1 keeps
// LeNet and ResNet-18 at 96, batch 1.
#ifdef SCRATCHNET_WITH_CUDA
#include <set>
#include <string>
#include <vector>

#include "test_cuda_checks.h"
#include "tools/bench_shapes.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;
namespace bench = scratchnet::tools::bench;

namespace {

// Checks each layer whose shape this test case has not checked yet.
void check_layers(const std::vector<bench::LayerShape>& layers, std::set<std::string>& seen,
                  uint64_t& seed) {
  using bench::Kind;
  for (const auto& l : layers) {
    const bool checked = l.kind == Kind::Conv || l.kind == Kind::Linear ||
                         l.kind == Kind::MaxPool || l.kind == Kind::AvgPool ||
                         l.kind == Kind::GlobalAvgPool || l.kind == Kind::BatchNorm;
    // Pointwise ops, the loss and SGD depend on the element count only:
    // test_cuda_ops.cpp sweeps them.
    if (!checked || !seen.insert(l.key()).second) continue;
    INFO(l.model << " " << l.layer << ": " << l.key());
    seed += 10;
    switch (l.kind) {
      case Kind::Conv:
        check_conv(l.conv, true, seed, Data::Exact);
        break;
      case Kind::Linear:
        check_linear_exact(l.linear, seed);
        break;
      case Kind::MaxPool:
      case Kind::AvgPool:
        check_pool_exact(l.pool, l.kind == Kind::MaxPool, seed);
        break;
      case Kind::GlobalAvgPool:
        check_global_avg_pool(l.planes, l.hw, seed);
        break;
      case Kind::BatchNorm:
        check_batch_norm(l.bn, seed);
        break;
      default:
        break;
    }
  }
}

// Every layer of `model` at `image_size`, at each batch.
void check_model(const std::string& model, int image_size, const std::vector<int>& batches,
                 std::set<std::string>& seen, uint64_t& seed) {
  for (int batch : batches) check_layers(bench::model_layers(model, batch, image_size), seen, seed);
}

std::vector<int> batches() {
  return small() ? std::vector<int>{1} : std::vector<int>{1, 3};
}

}  // namespace

TEST_CASE("CUDA kernels match the CPU on every layer shape of LeNet and AlexNet",
          "[cuda][shapes]") {
  std::set<std::string> seen;
  uint64_t seed = 7000;
  check_model("lenet", 28, batches(), seen, seed);
  if (!small()) check_model("alexnet", 224, batches(), seen, seed);
  // LeNet: 2 convs, 2 pools, 3 linears; AlexNet: 4 distinct convs (conv4 = conv5), 3 pools,
  // 3 linears; per batch.
  CHECK(seen.size() == (small() ? 7u : 2u * (7 + 10)));
}

TEST_CASE("CUDA kernels match the CPU on every layer shape of ResNet-18/34 at 96 and 224",
          "[cuda][shapes]") {
  std::set<std::string> seen;
  uint64_t seed = 8000;
  check_model("resnet18", 96, batches(), seen, seed);
  if (!small()) {
    check_model("resnet34", 96, batches(), seen, seed);
    check_model("resnet18", 224, batches(), seen, seed);  // layer4: 7x7 maps
    check_model("resnet34", 224, batches(), seen, seed);
  }
  if (!small()) CHECK(seen.count("gap planes=1536 HW=49") == 1);  // batch 3 x 512 planes of 7x7
}

// About 2 minutes on the emulated target (2 cores): [heavy].
TEST_CASE("CUDA conv2d matches the CPU on VGG-11's first layer at batch 19 (maximal split-K)",
          "[cuda][shapes][conv2d][heavy]") {
  // Implicit GEMM with the batch folded into the columns: N*P*Q = 953,344
  // (7,448 column tiles of 128) against a weight gradient of only 64 x 9,
  // which the plan splits along the reduction into the most slices it takes.
  const auto p = kernels::conv2d_params(19, 1, 224, 224, 64, 3, 3, 1, 1);
  check_conv(p, true, 9000, Data::Exact);
}

TEST_CASE("CUDA kernels match the CPU on every layer shape of VGG-11/13/16/19 at 224",
          "[cuda][shapes][heavy]") {
  std::set<std::string> seen;
  uint64_t seed = 10000;
  for (const char* model : {"vgg11", "vgg13", "vgg16", "vgg19"})
    check_model(model, 224, batches(), seen, seed);
  CHECK(seen.count("conv2d N=3 C=64 H=224 W=224 K=64 R=3 S=3 s=1 p=1") == (small() ? 0u : 1u));
}
#endif  // SCRATCHNET_WITH_CUDA
