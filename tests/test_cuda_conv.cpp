// [cuda] conv2d kernels (implicit GEMM, kernels/cuda/conv2d.cu) against the
// CPU reference over a sweep of shapes: 1x1 .. 11x11 kernels, strides 1/2/4,
// with and without padding (also padding wider than the kernel), odd sizes,
// batch 1 and larger batches, each of the four tile shapes (forced, and as
// the rule picks them) on dimensions that are not multiples of the tile,
// weight gradients split along the reduction (split-K), the fused ReLU
// epilogue, and run-to-run bit-identical weight gradients. Every layer shape
// of every model is in test_cuda_shapes.cpp.
// The kernels are called directly: forward outputs are poisoned with NaN
// first (unwritten elements fail), and backward buffers start from the same
// values on both sides (checks that backward accumulates, +=).
// Tolerance rule: see test_cuda_helpers.h. Each shape runs twice: with
// integer data, compared bit for bit with the CPU reference (rule 1), and
// with uniform data, compared with the fp64 reference (rule 2) with
// L = C*R*S + 1 (forward, bias included), K*R*S + 1 (data gradient, the
// accumulated value included), N*P*Q + 1 (weight and bias gradients).
#ifdef SCRATCHNET_WITH_CUDA
#include <utility>
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

// Forces one tile shape on every conv launch for its scope
// (kernels::conv2d_cuda_force_tile_for_testing, set before sizing the workspace).
class ForceTile {
 public:
  ForceTile(int bm, int bn) { k::conv2d_cuda_force_tile_for_testing(bm, bn); }
  ~ForceTile() { k::conv2d_cuda_force_tile_for_testing(0, 0); }
  ForceTile(const ForceTile&) = delete;
  ForceTile& operator=(const ForceTile&) = delete;
};

bool same_tile(k::Conv2dTile a, k::Conv2dTile b) {
  return a.bm == b.bm && a.bn == b.bn;
}

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
  // The weight-gradient GEMM splits its reduction (N*P*Q) into slices of
  // >= 512 terms (a multiple of 8) when its K x CRS tiles alone would leave
  // the GPU idle (kernels/cuda/conv2d.cu): these small layers split 3, 4 and
  // 8 ways, the first with a shorter last slice (1798 = 600 + 600 + 598).
  const std::vector<std::pair<ConvCase, int>> cases = {
      {{2, 1, 31, 29, 4, 3, 1, 1, true}, 3},
      {{2, 3, 32, 32, 7, 3, 1, 1, false}, 4},
      {{4, 2, 32, 32, 8, 3, 1, 1, true}, 8},
      {{5, 2, 32, 32, 4, 3, 1, 1, true}, 10},
  };
  uint64_t seed = 1500;
  for (const auto& [c, split] : cases) {
    const auto p = k::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad);
    CHECK(k::conv2d_cuda_plan(p).weight_split == split);
    CHECK(k::conv2d_workspace_bytes_cuda(p) ==
          std::size_t(split) * (std::size_t(c.K) * c.C * c.R * c.R + c.K) * sizeof(float));
    check_conv_both(c, seed += 10);
  }
  // 2 x 5 tiles (K 256, CRS 576): 26 slices would fill the GPU, but 1568
  // terms make only 3 of >= 512.
  const auto mid = k::conv2d_params(8, 64, 14, 14, 256, 3, 3, 1, 1);
  CHECK(k::conv2d_cuda_plan(mid).weight_split == 3);
  // No split: tiles that fill the GPU (ResNet layer4: 4 x 36 = 144 of 264
  // target blocks), or a reduction shorter than two slices.
  const auto big = k::conv2d_params(64, 512, 7, 7, 512, 3, 3, 1, 1);
  CHECK(k::conv2d_cuda_plan(big).weight_split == 1);
  const auto one = k::conv2d_params(1, 3, 9, 9, 5, 3, 3, 1, 1);  // 81 terms
  CHECK(k::conv2d_cuda_plan(one).weight_split == 1);
  CHECK(k::conv2d_workspace_bytes_cuda(one) == 0);
  check_conv_both({1, 3, 9, 9, 5, 3, 1, 1, true}, seed += 10);
}

TEST_CASE("conv2d CUDA kernels match the CPU with each tile shape on ragged dimensions",
          "[cuda][conv2d]") {
  // Channels, GEMM columns (N*P*Q, N*H*W, C*R*S) and reductions that are not
  // multiples of the tile (64 or 128) or of its k-step (8); images straddle
  // column tiles (the batch is folded into the columns).
  const std::vector<ConvCase> cases = {
      {3, 5, 13, 11, 70, 3, 1, 1, true},   // K = 70: one full and one ragged 64-row tile
      {2, 67, 9, 7, 9, 3, 2, 1, true},     // stride 2, C = 67 rows of the data gradient
      {2, 130, 6, 5, 65, 1, 1, 0, false},  // 1x1: CRS = 130
      {2, 3, 23, 21, 10, 7, 2, 3, true},   // 7x7 stride 2 pad 3 (ResNet stem)
      {2, 2, 7, 6, 5, 3, 1, 4, true},      // pad 4 > kernel: rows and columns of bias only
      {3, 4, 13, 11, 6, 1, 2, 0, false},   // 1x1 stride 2 (shortcut)
  };
  uint64_t seed = 1700;
  for (const auto& [bm, bn] :
       std::vector<std::pair<int, int>>{{64, 64}, {64, 128}, {128, 64}, {128, 128}}) {
    INFO("tile " << bm << "x" << bn);
    ForceTile force(bm, bn);
    for (const auto& c : cases) check_conv_both(c, seed += 10);
  }
}

TEST_CASE("conv2d CUDA forward and data gradient have the same bits with every tile shape",
          "[cuda][conv2d]") {
  // Each y / dx element is one thread's sum over the reduction in ascending
  // order whatever the tile (kernels/cuda/conv2d.cu); non-integer data, so a
  // different summation order would show in the last bits.
  const auto p = k::conv2d_params(3, 5, 13, 11, 70, 3, 3, 2, 1);
  Pair x = random_pair({p.N, p.C, p.H, p.W}, 1960), w = random_pair({p.K, p.C, p.R, p.S}, 1961);
  Pair b = random_pair({p.K}, 1962), dy = random_pair({p.N, p.K, p.P, p.Q}, 1963);
  Pair dx0 = random_pair({p.N, p.C, p.H, p.W}, 1964);
  std::vector<float> first_y, first_dx;
  for (const auto& [bm, bn] :
       std::vector<std::pair<int, int>>{{64, 64}, {64, 128}, {128, 64}, {128, 128}}) {
    INFO("tile " << bm << "x" << bn);
    ForceTile force(bm, bn);
    Tensor ws = workspace_for(p);
    Tensor y = poisoned({p.N, p.K, p.P, p.Q}), dx = dx0.gpu.clone();
    k::conv2d_forward_cuda(p, x.gpu.data<float>(), w.gpu.data<float>(), b.gpu.data<float>(),
                           y.data<float>(), ws.data<uint8_t>(), cuda::stream());
    k::conv2d_backward_data_cuda(p, dy.gpu.data<float>(), w.gpu.data<float>(), dx.data<float>(),
                                 ws.data<uint8_t>(), cuda::stream());
    if (first_y.empty()) {
      first_y = y.to_vector();
      first_dx = dx.to_vector();
    } else {
      CHECK(bit_identical(first_y, y.to_vector()));
      CHECK(bit_identical(first_dx, dx.to_vector()));
    }
  }
}

TEST_CASE("conv2d CUDA tile rule picks each tile shape, and each matches the CPU",
          "[cuda][conv2d]") {
  // BM = 64 for <= 64 channels, else 128; BN = 64 while 128-wide tiles give
  // fewer than 264 blocks (forward, data gradient); weight gradient:
  // BN = 64 for C*R*S <= 64. 1 x 184 x 184 = 33856 columns: 265 tiles of 128.
  struct Want {
    ConvCase c;
    k::Conv2dTile fwd, dgrad, wgrad;
  };
  const std::vector<Want> cases = {
      {{1, 1, 184, 184, 8, 3, 1, 1, true}, {64, 128}, {64, 128}, {64, 64}},
      {{1, 1, 184, 184, 65, 3, 1, 1, false}, {128, 128}, {64, 128}, {128, 64}},
      {{2, 65, 7, 7, 9, 3, 1, 1, true}, {64, 64}, {128, 64}, {64, 128}},
      {{3, 8, 9, 9, 129, 1, 1, 0, true}, {128, 64}, {64, 64}, {128, 64}},
  };
  uint64_t seed = 1800;
  for (const auto& w : cases) {
    const ConvCase& c = w.c;
    const auto pl =
        k::conv2d_cuda_plan(k::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad));
    CHECK(same_tile(pl.forward, w.fwd));
    CHECK(same_tile(pl.backward_data, w.dgrad));
    CHECK(same_tile(pl.backward_weight, w.wgrad));
    check_conv(c, seed += 10, Data::Exact);
  }
}

TEST_CASE("conv2d CUDA forward fuses bias and ReLU into the epilogue", "[cuda][conv2d]") {
  // y = max(conv(x, w) + b, 0), equal bit for bit to the CPU forward followed
  // by the ReLU (integer data: about half the outputs are negative).
  const std::vector<ConvCase> cases = {
      {2, 3, 11, 10, 70, 3, 1, 1, true},
      {2, 3, 11, 10, 7, 3, 2, 1, false},
      {1, 5, 9, 9, 130, 1, 1, 0, true},
  };
  uint64_t seed = 1900;
  for (const auto& c : cases) {
    const auto p = k::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad);
    Pair x = exact_pair({p.N, p.C, p.H, p.W}, seed += 10),
         w = exact_pair({p.K, p.C, p.R, p.S}, seed + 1);
    Pair b = exact_pair({p.K}, seed + 2);
    Tensor ws = workspace_for(p);
    Tensor y = poisoned({p.N, p.K, p.P, p.Q}), yc = Tensor::zeros({p.N, p.K, p.P, p.Q});
    k::conv2d_forward_cuda(p, x.gpu.data<float>(), w.gpu.data<float>(),
                           c.bias ? b.gpu.data<float>() : nullptr, y.data<float>(),
                           ws.data<uint8_t>(), cuda::stream(), /*relu=*/true);
    k::conv2d_forward_cpu(p, x.cpu.data<float>(), w.cpu.data<float>(),
                          c.bias ? b.cpu.data<float>() : nullptr, yc.data<float>());
    int negatives = 0;
    for (float v : yc.to_vector()) negatives += v < 0.0f;
    CHECK(negatives > 0);
    Tensor want = relu(yc);
    require_exact(y, want, "relu(y)");
  }
}

TEST_CASE("conv2d CUDA kernels match the CPU across image boundaries in the GEMM columns",
          "[cuda][conv2d]") {
  // The batch is folded into the columns: images end inside a tile.
  const std::vector<ConvCase> cases = {
      {5, 2, 32, 32, 4, 3, 1, 1, true},
      {5, 8, 16, 16, 8, 1, 1, 0, true},
      {5, 4, 13, 11, 6, 1, 2, 0, false},
      {5, 3, 9, 9, 5, 5, 2, 2, true},
  };
  uint64_t seed = 1950;
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

// 1.3M GEMM columns (3 x 660 x 660): large grids. 2.3 GMAC: [heavy] on the
// emulated target.
TEST_CASE("conv2d CUDA kernels match the CPU on large images", "[cuda][conv2d][heavy]") {
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
