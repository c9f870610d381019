// [cuda] A model-level check: one training step of a small network that uses
// every layer type (conv, batch norm, ReLU, max pool, average pool, global
// average pool, residual add, dropout, linear, sigmoid, cross-entropy),
// written with raw ops, on the CPU and on the GPU from the same weights and
// batch. Forward logits, loss, every parameter gradient, the batch-norm
// running statistics and the parameters after one SGD step must match.
// Then the same for one whole training step of every model of the course
// (forward, cross-entropy, backward, SGD with momentum and weight decay).
// Tolerance rule (whole networks; the per-kernel rules are in
// test_cuda_helpers.h): each layer's float result is within ~u*sqrt(L) of
// exact (rule 2), and over a network of D layers those relative errors add:
// about 20 * 6 * 2^-24 * sqrt(4608) ~ 5e-4 at worst for the deepest models;
// measured on the emulated target, 1e-5 (ResNet-18/34 at 64 px). Besides, a
// pre-activation within that error of 0 may pass ReLU on one device and not
// on the other (and near-equal values may swap a max-pool argmax). Such a
// flip barely moves the forward (the value is ~0) but switches that unit's
// backward signal on or off, so it moves the gradients of the layers below by
// up to 1/sqrt(number of terms in their sums): measured 5.6e-3 of the norm in
// ResNet-34 at 64 px, batch 2, for one input (2e-5 for another). With ~1e-6 of
// the units that close to 0, flips are likely in a deep net. So tensors are
// compared norm-wise, the forward at the rounding level, the backward with
// room for a flip:
//   ||gpu - cpu||_2 <= 1e-3 * ||cpu||_2              (logits, loss, running stats)
//   ||gpu - cpu||_2 <= 1e-2 * ||cpu||_2 + 1e-6 * G   (each gradient; G = the norm
//                                                     of all CPU gradients: a conv
//                                                     bias followed by batch norm
//                                                     has gradient 0 up to rounding)
//   ||w'_gpu - w'_cpu||_2 <= 1e-2 * ||w'_cpu - w||_2 + lr * 1e-6 * G + 8u ||w||_2
//                                             (parameters after SGD, against the
//                                              size of the update: the first step
//                                              moves w by lr * (g + wd * w))
// Batch norm over very few values (ResNet's last stage at 32 px: 1x1 maps,
// two values per channel at batch 2) is ill-conditioned when a channel's
// values nearly coincide, so ResNet runs at 64 px: 8 values per channel.
// An indexing or accumulation bug (a dropped image at batch 2, a wrong tap,
// a gradient added twice, one split-K slice of 128 lost) moves a tensor by
// 0.1 to 1 of its norm: outside both bounds.
#ifdef SCRATCHNET_WITH_CUDA
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/cuda.h"
#include "core/ops.h"
#include "models/models.h"
#include "test_cuda_helpers.h"
#include "train/optimizer.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;

namespace {

constexpr int N = 8, C0 = 3, HW = 12, C1 = 8, HID = 16, CLASSES = 10;

struct Net {
  std::map<std::string, Tensor> params;  // trainable
  std::map<std::string, Tensor> stats;   // running mean / var

  Tensor forward(const Tensor& x, Generator& gen) const {
    auto& P = params;
    auto bn = [&](const Tensor& t, const std::string& n) {
      return batch_norm(t, P.at(n + ".weight"), P.at(n + ".bias"), stats.at(n + ".running_mean"),
                        stats.at(n + ".running_var"), true);
    };
    Tensor h = conv2d(x, P.at("conv1.weight"), P.at("conv1.bias"), 1, 1);  // (N, 8, 12, 12)
    h = relu(bn(h, "bn1"));
    h = max_pool2d(h, 2, 2);  // (N, 8, 6, 6)
    Tensor r = conv2d(h, P.at("conv2.weight"), Tensor(), 1, 1);
    r = relu(bn(r, "bn2"));
    h = add(h, r);                            // residual
    h = avg_pool2d(h, 3, 1, 1);               // (N, 8, 6, 6)
    h = global_avg_pool(h).reshape({N, C1});  // (N, 8)
    h = sigmoid(linear(h, P.at("fc1.weight"), P.at("fc1.bias")));
    h = dropout(h, 0.3f, true, gen);
    return linear(h, P.at("fc2.weight"), P.at("fc2.bias"));  // (N, 10)
  }
};

Net make_net(Device d) {
  Net net;
  uint64_t seed = 900;
  auto add_param = [&](const std::string& name, const Shape& s, float lo, float hi) {
    Tensor t = testing::random_tensor(s, ++seed, lo, hi).to(d);
    t.set_requires_grad(true);
    net.params[name] = t;
  };
  add_param("conv1.weight", {C1, C0, 3, 3}, -0.5f, 0.5f);
  add_param("conv1.bias", {C1}, -0.1f, 0.1f);
  add_param("bn1.weight", {C1}, 0.5f, 1.5f);
  add_param("bn1.bias", {C1}, -0.2f, 0.2f);
  add_param("conv2.weight", {C1, C1, 3, 3}, -0.3f, 0.3f);
  add_param("bn2.weight", {C1}, 0.5f, 1.5f);
  add_param("bn2.bias", {C1}, -0.2f, 0.2f);
  add_param("fc1.weight", {HID, C1}, -0.5f, 0.5f);
  add_param("fc1.bias", {HID}, -0.1f, 0.1f);
  add_param("fc2.weight", {CLASSES, HID}, -0.5f, 0.5f);
  add_param("fc2.bias", {CLASSES}, -0.1f, 0.1f);
  for (const char* bn : {"bn1", "bn2"}) {
    net.stats[std::string(bn) + ".running_mean"] = Tensor::zeros({C1}, d);
    net.stats[std::string(bn) + ".running_var"] = Tensor::full({C1}, 1.0f, d);
  }
  return net;
}

}  // namespace

namespace {

constexpr double kNetTol = 1e-3;     // forward: the norm-wise rule above
constexpr double kGradTol = 1e-2;    // gradients and the step
constexpr double kGradFloor = 1e-6;  // times the norm of all gradients

double norm2(const std::vector<float>& v) {
  double s = 0;
  for (float f : v) s += double(f) * f;
  return std::sqrt(s);
}

double diff2(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(s);
}

// ||gpu - cpu|| <= tol * ||cpu|| + floor, and no NaN/Inf on the GPU.
void require_norm_close(const Tensor& got_gpu, const Tensor& want_cpu, double tol, double floor,
                        const std::string& what) {
  REQUIRE(got_gpu.is_cuda());
  REQUIRE(got_gpu.shape() == want_cpu.shape());
  const auto g = got_gpu.to_vector(), w = want_cpu.to_vector();
  REQUIRE(std::all_of(g.begin(), g.end(), [](float f) { return std::isfinite(f); }));
  const double d = diff2(g, w), n = norm2(w);
  INFO(what << ": ||gpu - cpu|| = " << d << ", ||cpu|| = " << n << ", allowed " << tol * n + floor);
  REQUIRE(d <= tol * n + floor);
}

}  // namespace

TEST_CASE("one training step of a small every-layer model matches on GPU and CPU",
          "[cuda][model]") {
  Net cpu = make_net(Device::cpu()), gpu_net = make_net(gpu());
  Tensor x = testing::random_tensor({N, C0, HW, HW}, 77);
  std::vector<int32_t> lab(N);
  for (int i = 0; i < N; ++i) lab[i] = (i * 7 + 3) % CLASSES;
  Tensor labels = Tensor::from_vector(lab, {N});

  Generator gen_c(5), gen_g(5);  // same seed and offset: the same dropout mask
  Tensor logits_c = cpu.forward(x, gen_c);
  Tensor logits_g = gpu_net.forward(x.to(gpu()), gen_g);
  require_norm_close(logits_g, logits_c, kNetTol, 0.0, "logits");
  Tensor loss_c = cross_entropy(logits_c, labels);
  Tensor loss_g = cross_entropy(logits_g, labels.to(gpu()));
  require_norm_close(loss_g, loss_c, kNetTol, 0.0, "loss");

  loss_c.backward();
  loss_g.backward();
  double G = 0;
  for (const auto& [name, pc] : cpu.params) G = std::hypot(G, norm2(pc.grad().to_vector()));
  for (const auto& [name, pc] : cpu.params) {
    INFO("gradient of " << name);
    const Tensor& pg = gpu_net.params.at(name);
    REQUIRE(pc.grad().defined());
    REQUIRE(pg.grad().defined());
    require_norm_close(pg.grad(), pc.grad(), kGradTol, kGradFloor * G, name + ".grad");
  }
  for (const auto& [name, sc] : cpu.stats)
    require_norm_close(gpu_net.stats.at(name), sc, kNetTol, 0.0, name);

  kernels::SgdParams sp;
  sp.lr = 0.1f;
  sp.momentum = 0.9f;
  sp.weight_decay = 1e-4f;
  for (auto& [name, pc] : cpu.params) {
    Tensor& pg = gpu_net.params.at(name);
    Tensor buf_c = Tensor::zeros(pc.shape()), buf_g = Tensor::zeros(pg.shape(), gpu());
    Tensor wc = pc.detach(), wg = pg.detach();
    const Tensor before = wc.clone();
    sgd_step(wc, pc.grad(), buf_c, sp);
    sgd_step(wg, pg.grad(), buf_g, sp);
    const double update = diff2(wc.to_vector(), before.to_vector());
    require_norm_close(
        wg, wc, 0.0,
        kGradTol * update + sp.lr * kGradFloor * G + 8 * kUnitRoundoff * norm2(before.to_vector()),
        name + " after SGD");
  }
}

namespace {

// One training step of models::make(name) on both devices from the same
// initialisation, batch and dropout stream.
void check_model_step(const std::string& name, int image_size, int batch, int width_divisor) {
  INFO(name << " at " << image_size << "x" << image_size << ", batch " << batch
            << ", width divisor " << width_divisor);
  Generator gen_c(11), gen_g(11);  // Dropout layers draw their masks from these
  auto cpu_model = models::make(name, gen_c, width_divisor);
  auto gpu_model = models::make(name, gen_g, width_divisor);
  gpu_model->to(gpu());
  const train::SgdConfig config{0.05f, 0.9f, 5e-4f, false};
  train::SGD opt_c(pack_parameters(*cpu_model), config);
  train::SGD opt_g(pack_parameters(*gpu_model), config);
  const auto pc = cpu_model->named_parameters(), pg = gpu_model->named_parameters();
  REQUIRE(pc.size() == pg.size());
  std::vector<Tensor> before;
  for (std::size_t i = 0; i < pc.size(); ++i) {
    REQUIRE(pc[i].name == pg[i].name);
    REQUIRE(pg[i].tensor.is_cuda());
    before.push_back(pc[i].tensor.clone());
    REQUIRE(bit_identical(pg[i].tensor.to_vector(), before.back().to_vector()));  // same init
  }
  Tensor x = testing::random_tensor({batch, 1, image_size, image_size}, 12, 0.0f, 1.0f);
  std::vector<int32_t> lab(static_cast<std::size_t>(batch));
  for (int i = 0; i < batch; ++i) lab[i] = (3 * i + 1) % 10;
  Tensor labels = Tensor::from_vector(lab, {batch});

  opt_c.zero_grad();
  opt_g.zero_grad();
  Tensor logits_c = (*cpu_model)(x), logits_g = (*gpu_model)(x.to(gpu()));
  require_norm_close(logits_g, logits_c, kNetTol, 0.0, "logits");
  Tensor loss_c = cross_entropy(logits_c, labels);
  Tensor loss_g = cross_entropy(logits_g, labels.to(gpu()));
  require_norm_close(loss_g, loss_c, kNetTol, 0.0, "loss");
  loss_c.backward();
  loss_g.backward();
  double G = 0;
  for (const auto& e : pc) G = std::hypot(G, norm2(e.tensor.grad().to_vector()));
  for (std::size_t i = 0; i < pc.size(); ++i) {
    REQUIRE(pc[i].tensor.grad().defined());
    REQUIRE(pg[i].tensor.grad().defined());
    require_norm_close(pg[i].tensor.grad(), pc[i].tensor.grad(), kGradTol, kGradFloor * G,
                       pc[i].name + " gradient");
  }
  const auto bc = cpu_model->named_buffers(), bg = gpu_model->named_buffers();
  REQUIRE(bc.size() == bg.size());
  for (std::size_t i = 0; i < bc.size(); ++i) {
    if (bc[i].tensor.dtype() != DType::F32) continue;  // num_batches_tracked: on the host
    require_norm_close(bg[i].tensor, bc[i].tensor, kNetTol, 0.0, bc[i].name);
  }
  opt_c.step();
  opt_g.step();
  for (std::size_t i = 0; i < pc.size(); ++i) {
    const auto w0 = before[i].to_vector();
    const double update = diff2(pc[i].tensor.to_vector(), w0);
    CHECK(update > 0.0);  // the step moved every parameter tensor
    require_norm_close(
        pg[i].tensor, pc[i].tensor, 0.0,
        kGradTol * update + config.lr * kGradFloor * G + 8 * kUnitRoundoff * norm2(w0),
        pc[i].name + " after the SGD step");
  }
}

}  // namespace

// Sizes: the smallest input each architecture accepts (models::check_input_size)
// keeps the emulated run short (ResNet: 64, see the rule above); VGG must see 224 (its flatten is
// C*7*7), so it runs at width / 16 (the course trains width / 4). AlexNet has no width divisor: its
// 56M parameters (linear1 9600 -> 4096) are the heavy part.
TEST_CASE("one training step of LeNet and ResNet-18 matches on GPU and CPU", "[cuda][model]") {
  check_model_step("lenet", 28, 2, 1);
  check_model_step("resnet18", 64, 2, 1);
}

// About 40 s on the emulated target (2 cores).
TEST_CASE("one training step of ResNet-34 matches on GPU and CPU", "[cuda][model][heavy]") {
  check_model_step("resnet34", 64, 2, 1);
}

TEST_CASE("one training step of VGG-11 (width / 16) matches on GPU and CPU", "[cuda][model]") {
  check_model_step("vgg11", 224, 1, 16);
}

// About 25 s each on the emulated target (2 cores): the 4096-wide linear
// layers, which the width divisor leaves alone, dominate.
TEST_CASE("one training step of VGG-13/16/19 (width / 16) matches on GPU and CPU",
          "[cuda][model][heavy]") {
  for (const char* name : {"vgg13", "vgg16", "vgg19"}) check_model_step(name, 224, 1, 16);
}

TEST_CASE("one training step of AlexNet matches on GPU and CPU", "[cuda][model][heavy]") {
  check_model_step("alexnet", 195, 1, 1);
}
#endif  // SCRATCHNET_WITH_CUDA
