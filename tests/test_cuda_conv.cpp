// [cuda] conv2d kernels against the CPU reference over a sweep of shapes:
// 1x1 .. 11x11 kernels, strides 1/2/4, with and without padding, odd sizes,
// batch 1 and larger batches, a case large enough to be processed in several
// batch chunks, and run-to-run bit-identical weight gradients.
// The kernels are called directly: forward outputs are poisoned with NaN
// first (unwritten elements fail), and backward buffers start from the same
// random values on both sides (checks that backward accumulates, +=).
// Tolerance rule: see test_cuda_helpers.h, with L = C*R*S (forward),
// K*R*S (backward data), N*P*Q (weight and bias gradients).
#ifdef SCRATCHNET_WITH_CUDA
#include <vector>

#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/conv2d.h"
#include "test_cuda_helpers.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;
namespace k = scratchnet::kernels;

namespace {

struct ConvCase {
  int N, C, H, W, K, R, stride, pad;
  bool bias;
};

Tensor workspace_for(const k::Conv2dParams& p) {
  const auto bytes = static_cast<int64_t>(k::conv2d_workspace_bytes_cuda(p));
  return Tensor::empty({std::max<int64_t>(bytes, 1)}, gpu(), DType::U8);
}

void check_conv(const ConvCase& c, uint64_t seed) {
  const auto p = k::conv2d_params(c.N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad);
  INFO("conv2d N=" << c.N << " C=" << c.C << " H=" << c.H << " W=" << c.W << " K=" << c.K << " R=S="
                   << c.R << " stride=" << c.stride << " pad=" << c.pad << " bias=" << c.bias);
  Pair x = random_pair({p.N, p.C, p.H, p.W}, seed);
  Pair w = random_pair({p.K, p.C, p.R, p.S}, seed + 1);
  Pair b = random_pair({p.K}, seed + 2);
  Tensor ws = workspace_for(p);
  auto stream = cuda::stream();

  Tensor y_gpu = poisoned({p.N, p.K, p.P, p.Q});
  Tensor y_cpu = Tensor::zeros({p.N, p.K, p.P, p.Q});
  k::conv2d_forward_cuda(p, x.gpu.data<float>(), w.gpu.data<float>(),
                         c.bias ? b.gpu.data<float>() : nullptr, y_gpu.data<float>(),
                         ws.data<uint8_t>(), stream);
  k::conv2d_forward_cpu(p, x.cpu.data<float>(), w.cpu.data<float>(),
                        c.bias ? b.cpu.data<float>() : nullptr, y_cpu.data<float>());
  require_match(y_gpu, y_cpu, cuda_tol(double(p.C) * p.R * p.S), "y");

  Pair dy = random_pair({p.N, p.K, p.P, p.Q}, seed + 3);
  Pair dx = random_pair({p.N, p.C, p.H, p.W}, seed + 4);  // accumulated into
  k::conv2d_backward_data_cuda(p, dy.gpu.data<float>(), w.gpu.data<float>(), dx.gpu.data<float>(),
                               ws.data<uint8_t>(), stream);
  k::conv2d_backward_data_cpu(p, dy.cpu.data<float>(), w.cpu.data<float>(), dx.cpu.data<float>());
  require_match(dx.gpu, dx.cpu, cuda_tol(double(p.K) * p.R * p.S), "dx");

  Pair dw = random_pair({p.K, p.C, p.R, p.S}, seed + 5);
  Pair db = random_pair({p.K}, seed + 6);
  k::conv2d_backward_weight_cuda(p, x.gpu.data<float>(), dy.gpu.data<float>(), dw.gpu.data<float>(),
                                 c.bias ? db.gpu.data<float>() : nullptr, ws.data<uint8_t>(),
                                 stream);
  k::conv2d_backward_weight_cpu(p, x.cpu.data<float>(), dy.cpu.data<float>(), dw.cpu.data<float>(),
                                c.bias ? db.cpu.data<float>() : nullptr);
  const double L = double(p.N) * p.P * p.Q;
  require_match(dw.gpu, dw.cpu, cuda_tol(L), "dw");
  require_match(db.gpu, db.cpu, cuda_tol(L), "db");  // unchanged when !bias: still equal
}

}  // namespace

TEST_CASE("conv2d CUDA kernels match the CPU: kernel sizes x strides x padding", "[cuda][conv2d]") {
  uint64_t seed = 1000;
  const int batch = small() ? 2 : 5;
  for (int R : {1, 3, 5, 7, 11})
    for (int stride : {1, 2, 4})
      for (int pad : {0, R / 2}) {
        const int H = small() ? 13 : 23, W = small() ? 11 : 19;
        check_conv({batch, 3, H, W, 5, R, stride, pad, true}, seed += 10);
      }
}

TEST_CASE("conv2d CUDA kernels match the CPU: model shapes and batches", "[cuda][conv2d]") {
  std::vector<ConvCase> cases = {
      {1, 1, 28, 28, 6, 5, 1, 2, true},    // LeNet conv1, batch 1
      {1, 7, 9, 9, 130, 3, 1, 1, false},   // K not a multiple of the tile
      {3, 130, 5, 5, 9, 1, 1, 0, true},    // pointwise fast path, C > tile
      {2, 16, 14, 14, 33, 1, 2, 0, true},  // 1x1 stride 2 (ResNet shortcut): not pointwise
  };
  if (!small()) {
    cases.push_back({256, 1, 28, 28, 6, 5, 1, 2, true});    // LeNet conv1, training batch
    cases.push_back({64, 6, 14, 14, 16, 5, 1, 0, true});    // LeNet conv2
    cases.push_back({8, 64, 14, 14, 128, 3, 1, 1, true});   // VGG block
    cases.push_back({4, 1, 224, 224, 16, 11, 4, 1, true});  // AlexNet conv1 (fewer filters)
    cases.push_back({32, 64, 8, 8, 64, 1, 1, 0, false});    // pointwise, batch 32
    // (8*9 + 8) floats * 660*660 per image > the 256 MB chunk budget: one image per chunk.
    cases.push_back({3, 8, 660, 660, 8, 3, 1, 1, true});
  }
  uint64_t seed = 2000;
  for (const auto& c : cases) check_conv(c, seed += 10);
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
  Pair x = leaf_pair({3, 4, 10, 9}, 41), w = leaf_pair({6, 4, 3, 3}, 42), b = leaf_pair({6}, 43);
  Tensor yc = conv2d(x.cpu, w.cpu, b.cpu, 2, 1), yg = conv2d(x.gpu, w.gpu, b.gpu, 2, 1);
  require_match(yg, yc, cuda_tol(36), "y");
  Pair gy = random_pair(yc.shape(), 44);
  yc.backward(gy.cpu);
  yg.backward(gy.gpu);
  require_match(x.gpu.grad(), x.cpu.grad(), cuda_tol(54), "dx");
  require_match(w.gpu.grad(), w.cpu.grad(), cuda_tol(3 * 5 * 5), "dw");
  require_match(b.gpu.grad(), b.cpu.grad(), cuda_tol(3 * 5 * 5), "db");
}

TEST_CASE("an op mixing a CUDA and a CPU tensor throws DeviceError", "[cuda][conv2d][errors]") {
  Tensor x = Tensor::zeros({1, 2, 5, 5}, gpu()), w = Tensor::zeros({3, 2, 3, 3});
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), 1, 0), DeviceError);
  CHECK_THROWS_AS(add(Tensor::zeros({4}, gpu()), Tensor::zeros({4})), DeviceError);
  CHECK_THROWS_AS(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}, gpu()), Tensor()),
                  DeviceError);
}
#endif  // SCRATCHNET_WITH_CUDA
