// [cuda] conv2d kernels against the CPU reference over a sweep of shapes:
// 1x1 .. 11x11 kernels, strides 1/2/4, with and without padding, odd sizes,
// batch 1 and larger batches, weight gradients split along the reduction
// (split-K), batches processed in several chunks (a ragged last one), and
// run-to-run bit-identical weight gradients. Every layer shape of every
// model is in test_cuda_shapes.cpp.
// The kernels are called directly: forward outputs are poisoned with NaN
// first (unwritten elements fail), and backward buffers start from the same
// values on both sides (checks that backward accumulates, +=).
// Tolerance rule: see test_cuda_helpers.h. Each shape runs twice: with
// integer data, compared bit for bit with the CPU reference (rule 1), and
// with uniform data, compared with the fp64 reference (rule 2) with
// L = C*R*S + 1 (forward, bias included), K*R*S + 1 (data gradient, the
// accumulated value included), N*P*Q + 1 (weight and bias gradients).
#ifdef SCRATCHNET_WITH_CUDA
#include <vector>

#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/conv2d.h"
#include "test_cuda_checks.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;

namespace {

struct ConvCase {
  int N, C, H, W, K, R, stride, pad;
  bool bias;
};

void check_conv(const ConvCase& c, uint64_t seed, Data data) {
  check_conv(k::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad), c.bias, seed,
             data);
}

void check_conv_both(const ConvCase& c, uint64_t seed) {
  check_conv(c, seed, Data::Exact);
  check_conv(c, seed, Data::Fp64);
}

// Caps the images per conv chunk for its scope
// (kernels::conv2d_cuda_cap_chunk_images_for_testing, set before sizing the workspace).
class ChunkCap {
 public:
  explicit ChunkCap(int images) { k::conv2d_cuda_cap_chunk_images_for_testing(images); }
  ~ChunkCap() { k::conv2d_cuda_cap_chunk_images_for_testing(0); }
  ChunkCap(const ChunkCap&) = delete;
  ChunkCap& operator=(const ChunkCap&) = delete;
};

}  // namespace

TEST_CASE("conv2d CUDA kernels match the CPU: kernel sizes x strides x padding", "[cuda][conv2d]") {
  uint64_t seed = 1000;
  const int batch = small() ? 2 : 5;
  for (int R : {1, 3, 5, 7, 11})
    for (int stride : {1, 2, 4})
      for (int pad : {0, R / 2}) {
        const int H = small() ? 13 : 23, W = small() ? 11 : 19;
        check_conv_both({batch, 3, H, W, 5, R, stride, pad, true}, seed += 10);
      }
}

TEST_CASE("conv2d CUDA weight gradient with split-K matches the CPU", "[cuda][conv2d]") {
  // The weight-gradient GEMM splits its reduction (N*P*Q per chunk) into
  // slices of >= 512 terms when one tile row leaves the GPU idle
  // (kernels/cuda/conv2d.cu): these small layers split 3, 4 and 8 ways, the
  // first with a shorter last slice (1798 = 600 + 600 + 598).
  const std::vector<ConvCase> cases = {
      {2, 1, 31, 29, 4, 3, 1, 1, true},
      {2, 3, 32, 32, 7, 3, 1, 1, false},
      {4, 2, 32, 32, 8, 3, 1, 1, true},
  };
  uint64_t seed = 1500;
  for (const auto& c : cases) check_conv_both(c, seed += 10);
}

TEST_CASE("conv2d CUDA kernels match the CPU over several batch chunks", "[cuda][conv2d]") {
  // Two images per chunk: 5 images make chunks of 2, 2 and 1 (a ragged last
  // chunk), each chunk of the first case splitting its weight gradient too
  // (2 * 1024 terms: 4 slices; the last chunk 1024: 2).
  const std::vector<ConvCase> cases = {
      {5, 2, 32, 32, 4, 3, 1, 1, true},   // im2col, split-K inside chunks
      {5, 8, 16, 16, 8, 1, 1, 0, true},   // pointwise: no im2col, still chunked
      {5, 4, 13, 11, 6, 1, 2, 0, false},  // 1x1 stride 2: im2col path
      {5, 3, 9, 9, 5, 5, 2, 2, true},
  };
  ChunkCap cap(2);
  uint64_t seed = 1700;
  for (const auto& c : cases) check_conv_both(c, seed += 10);
}

TEST_CASE("conv2d CUDA kernels match the CPU: model shapes and batches", "[cuda][conv2d]") {
  std::vector<ConvCase> cases = {
      {1, 1, 28, 28, 6, 5, 1, 2, true},    // LeNet conv1, batch 1
      {1, 7, 9, 9, 130, 3, 1, 1, false},   // K not a multiple of the tile
      {3, 130, 5, 5, 9, 1, 1, 0, true},    // pointwise fast path, C > tile
      {2, 16, 14, 14, 33, 1, 2, 0, true},  // 1x1 stride 2 (ResNet shortcut): not pointwise
  };
  uint64_t seed = 2000;
  for (const auto& c : cases) check_conv_both(c, seed += 10);
  if (!small()) {
    // Larger: exact data; the fp64 reference (a naive loop) for the first two.
    cases = {
        {256, 1, 28, 28, 6, 5, 1, 2, true},    // LeNet conv1, training batch: L = 200,705
        {64, 6, 14, 14, 16, 5, 1, 0, true},    // LeNet conv2
        {8, 64, 14, 14, 128, 3, 1, 1, true},   // VGG block
        {4, 1, 224, 224, 16, 11, 4, 1, true},  // AlexNet conv1 (fewer filters)
        {32, 64, 8, 8, 64, 1, 1, 0, false},    // pointwise, batch 32
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
      check_conv(cases[i], seed += 10, Data::Exact);
      if (i < 2) check_conv(cases[i], seed, Data::Fp64);
    }
  }
}

// (8*9 + 8) floats * 660*660 per image: over half the 256 MB chunk budget, so
// one image per chunk at the default budget (the case above caps it instead).
// 2.3 GMAC: [heavy] on the emulated target.
TEST_CASE("conv2d CUDA kernels match the CPU on large images, one per chunk",
          "[cuda][conv2d][heavy]") {
  check_conv({3, 8, 660, 660, 8, 3, 1, 1, true}, 2500, Data::Exact);
}

TEST_CASE("conv2d CUDA weight gradient is bit-identical run to run", "[cuda][conv2d]") {
  const auto p = k::conv2d_params(small() ? 4 : 64, 6, 14, 14, 16, 5, 5, 1, 0);
  Pair x = random_pair({p.N, p.C, p.H, p.W}, 1), dy = random_pair({p.N, p.K, p.P, p.Q}, 2);
  Tensor ws = workspace_for(p);
  std::vector<float> first_w, first_b;
  for (int run = 0; run < 3; ++run) {
    Tensor dw = Tensor::zeros({p.K, p.C, p.R, p.S}, gpu()), db = Tensor::zeros({p.K}, gpu());
    k::conv2d_backward_weight_cuda(p, x.gpu.data<float>(), dy.gpu.data<float>(), dw.data<float>(),
                                   db.data<float>(), ws.data<uint8_t>(), cuda::stream());
    if (run == 0) {
      first_w = dw.to_vector();
      first_b = db.to_vector();
    } else {
      CHECK(bit_identical(first_w, dw.to_vector()));
      CHECK(bit_identical(first_b, db.to_vector()));
    }
  }
}

TEST_CASE("conv2d through the ops API on CUDA matches the CPU, with autograd", "[cuda][conv2d]") {
  auto leaf = [](const Shape& s, uint64_t seed) {
    Pair p = exact_pair(s, seed);
    p.cpu.set_requires_grad(true);
    p.gpu.set_requires_grad(true);
    return p;
  };
  Pair x = leaf({3, 4, 10, 9}, 41), w = leaf({6, 4, 3, 3}, 42), b = leaf({6}, 43);
  Tensor yc = conv2d(x.cpu, w.cpu, b.cpu, 2, 1), yg = conv2d(x.gpu, w.gpu, b.gpu, 2, 1);
  require_exact(yg, yc, "y");
  Pair gy = exact_pair(yc.shape(), 44);
  yc.backward(gy.cpu);
  yg.backward(gy.gpu);
  require_exact(x.gpu.grad(), x.cpu.grad(), "dx");
  require_exact(w.gpu.grad(), w.cpu.grad(), "dw");
  require_exact(b.gpu.grad(), b.cpu.grad(), "db");
}

TEST_CASE("an op mixing a CUDA and a CPU tensor throws DeviceError", "[cuda][conv2d][errors]") {
  Tensor x = Tensor::zeros({1, 2, 5, 5}, gpu()), w = Tensor::zeros({3, 2, 3, 3});
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), 1, 0), DeviceError);
  CHECK_THROWS_AS(add(Tensor::zeros({4}, gpu()), Tensor::zeros({4})), DeviceError);
  CHECK_THROWS_AS(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}, gpu()), Tensor()),
                  DeviceError);
}
#endif  // SCRATCHNET_WITH_CUDA
