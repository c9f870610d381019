// Fresh gradient buffers (core/autograd.h): the first contribution to an
// intermediate's gradient is written into an uninitialised buffer by ops
// recorded with record_writing(); later contributions accumulate.
// (1) The engine: which buffers are fresh (first consumer only; never a
//     leaf's .grad, never an input used twice by one node; none with
//     SCRATCHNET_GRAD_FILL=zero) and that a second consumer accumulates.
// (2) Whole training steps (forward, cross-entropy, backward) of LeNet,
//     ResNet-18 (the residual shortcut: one tensor, two consumers) and VGG-11
//     (width / 16) with fresh buffers filled with NaN: an op that read a fresh
//     buffer instead of writing it would poison its gradient. Every parameter
//     gradient must equal, bit for bit (== on values: writing v and adding v
//     to 0 differ only in the sign of a zero), the zero-fill path's
//     (SCRATCHNET_GRAD_FILL=zero: every buffer zeroed, every op accumulates),
//     and so must the product path (uninitialised buffers). On the CPU and,
//     tagged [cuda], on the GPU (the emulated target at the same small sizes).
// (3) One chain of the ops the models use less (sigmoid, dropout in training
//     mode, average pooling with overlapping and with tiling windows that
//     leave rows and columns uncovered, global average pooling): every
//     intermediate's buffer fresh, the input gradient equal to the zero-fill
//     path's, on the CPU and [cuda].
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "models/models.h"
#include "test_helpers.h"

using namespace scratchnet;

namespace {

// SCRATCHNET_GRAD_FILL for one scope (nullptr: unset).
struct GradFill {
  explicit GradFill(const char* value) {
    if (value)
      setenv("SCRATCHNET_GRAD_FILL", value, 1);
    else
      unsetenv("SCRATCHNET_GRAD_FILL");
  }
  ~GradFill() { unsetenv("SCRATCHNET_GRAD_FILL"); }
  GradFill(const GradFill&) = delete;
  GradFill& operator=(const GradFill&) = delete;
};

// An identity op on CPU tensors recorded with record_writing(). Its backward
// logs the fresh flag it was given and the buffer's first value on entry,
// then writes (fresh) or accumulates gy into the input gradient.
struct Probe {
  std::vector<bool> fresh;
  std::vector<float> first;

  Tensor operator()(const Tensor& x) {
    Tensor y = x.detach().clone();
    if (needs_grad({&x}))
      record_writing(y, "probe", {x}, {},
                     [this](const Tensor& gy, const std::vector<Tensor>& g,
                            const std::vector<Tensor>&, const std::vector<bool>& f) {
                       REQUIRE(f.size() == 1);
                       fresh.push_back(f[0]);
                       first.push_back(g[0].host<float>()[0]);
                       Tensor dst = g[0];
                       if (f[0])
                         dst.copy_(gy);
                       else
                         accumulate(gy, dst);
                     });
    return y;
  }
};

}  // namespace

TEST_CASE("fresh buffers: the first consumer writes, the second accumulates", "[autograd]") {
  GradFill nan_fill("nan");
  Tensor x = testing::random_tensor({4}, 1);
  x.set_requires_grad(true);
  Probe p;
  Tensor h = p(x);          // its input is a leaf: never fresh
  Tensor u = p(h), v = p(h);  // h has two consumers
  Tensor root = add(u, v);
  root.backward(Tensor::full(root.shape(), 1.0f));
  // Backward runs add, then v's and u's probes (either order), then h's.
  REQUIRE(p.fresh.size() == 3);
  CHECK(p.fresh[0] != p.fresh[1]);  // exactly one of the two consumers got a fresh buffer
  const int first_fresh = p.fresh[0] ? 0 : 1;
  CHECK(std::isnan(p.first[first_fresh]));      // fresh buffers are NaN-filled here
  CHECK(p.first[1 - first_fresh] == 1.0f);      // the second sees the first's contribution
  CHECK_FALSE(p.fresh[2]);                       // a leaf's .grad accumulates
  CHECK(x.grad().to_vector() == std::vector<float>(4, 2.0f));
}

TEST_CASE("fresh buffers: none for an input used twice by one node, none with fill=zero",
          "[autograd]") {
  Tensor x = testing::random_tensor({3}, 2);
  x.set_requires_grad(true);
  SECTION("add(h, h)") {
    GradFill nan_fill("nan");
    Probe p;
    Tensor h = p(x);
    Tensor y = add(h, h);  // both grad_inputs are one buffer: zero-filled, accumulated
    Tensor z = p(y);
    z.backward(Tensor::full(z.shape(), 1.0f));
    REQUIRE(p.fresh.size() == 2);
    CHECK(x.grad().to_vector() == std::vector<float>(3, 2.0f));
  }
  SECTION("add_relu(h, h) and a second consumer (sigmoid)") {
    GradFill nan_fill("nan");
    Tensor h = relu(x);
    Tensor y = add_relu(h, h);
    Tensor s = sigmoid(h);  // h's buffer: fresh for whichever of the two runs first
    Tensor root = add(y, s);
    root.backward(Tensor::full(root.shape(), 1.0f));
    const auto g = x.grad().to_vector(), xs = x.to_vector(), ss = s.to_vector();
    for (std::size_t i = 0; i < g.size(); ++i) {
      const float want = xs[i] > 0.0f ? 2.0f + ss[i] * (1.0f - ss[i]) : 0.0f;
      CHECK(g[i] == Approx(want));
    }
  }
  SECTION("SCRATCHNET_GRAD_FILL=zero") {
    GradFill zero_fill("zero");
    Probe p;
    Tensor u = p(p(x));
    u.backward(Tensor::full(u.shape(), 1.0f));
    CHECK(p.fresh == std::vector<bool>{false, false});
    CHECK(p.first[0] == 0.0f);
  }
  SECTION("an unknown value is an error") {
    GradFill bad("garbage");
    Tensor u = relu(x);
    CHECK_THROWS_AS(u.backward(Tensor::full(u.shape(), 1.0f)), ValueError);
  }
}

namespace {

// The loss and every parameter gradient after one forward + backward of
// models::make(name) on `device`, fresh buffers as `fill` says; `stats`: what
// that backward did with intermediates' gradient buffers.
std::vector<std::vector<float>> step_gradients(const std::string& name, int image_size, int batch,
                                               int width_divisor, Device device, const char* fill,
                                               GradBufferStats* stats = nullptr) {
  Generator gen(11);  // the same weights and dropout masks every call
  auto model = models::make(name, gen, width_divisor);
  model->to(device);
  Tensor x = testing::random_tensor({batch, 1, image_size, image_size}, 12, 0.0f, 1.0f);
  std::vector<int32_t> lab(static_cast<std::size_t>(batch));
  for (int i = 0; i < batch; ++i) lab[i] = (3 * i + 1) % 10;
  Tensor labels = Tensor::from_vector(lab, {batch}).to(device);
  GradFill scope(fill);
  Tensor loss = cross_entropy((*model)(x.to(device)), labels);
  loss.backward();
  if (stats) *stats = last_backward_grad_buffers();
  std::vector<std::vector<float>> out{loss.to_vector()};
  for (const auto& e : model->named_parameters()) {
    REQUIRE(e.tensor.grad().defined());
    out.push_back(e.tensor.grad().to_vector());
  }
  return out;
}

// == on values (not bits): +0 and -0 are equal, NaN equals nothing.
void check_step_bit_equal(const std::string& name, int image_size, int batch, int width_divisor,
                          Device device) {
  INFO(name << " on " << device.str());
  GradBufferStats zero_path, fresh_path;
  const auto want =
      step_gradients(name, image_size, batch, width_divisor, device, "zero", &zero_path);
  CHECK(zero_path.fresh == 0);
  for (const char* fill : {"nan", static_cast<const char*>(nullptr)}) {
    INFO("SCRATCHNET_GRAD_FILL=" << (fill ? fill : "(unset)"));
    const auto got =
        step_gradients(name, image_size, batch, width_divisor, device, fill, &fresh_path);
    // The same buffers, now all fresh: every op on these models' paths
    // writes (a tensor used twice by one node, or an op recorded with
    // record(), would still be zeroed; none is here).
    CHECK(fresh_path.fresh + fresh_path.zeroed == zero_path.zeroed);
    CHECK(fresh_path.fresh_bytes + fresh_path.zeroed_bytes == zero_path.zeroed_bytes);
    CHECK(fresh_path.fresh > 0);
    CHECK(fresh_path.zeroed == 0);
    REQUIRE(got.size() == want.size());
    for (std::size_t t = 0; t < got.size(); ++t) {
      INFO("tensor " << t << " (0: the loss, then the parameters in order)");
      REQUIRE(got[t].size() == want[t].size());
      std::size_t bad = 0;
      for (std::size_t i = 0; i < got[t].size(); ++i) bad += got[t][i] == want[t][i] ? 0 : 1;
      CHECK(bad == 0);
    }
  }
}

}  // namespace

TEST_CASE("a training step with fresh buffers (NaN-filled) equals the zero-fill path: LeNet",
          "[autograd][model]") {
  check_step_bit_equal("lenet", 28, 2, 1, Device::cpu());
}

TEST_CASE("a training step with fresh buffers equals the zero-fill path: ResNet-18, VGG-11",
          "[autograd][model]") {
  check_step_bit_equal("resnet18", 32, 2, 1, Device::cpu());
  check_step_bit_equal("vgg11", 224, 1, 16, Device::cpu());
}

namespace {

// The input gradient of a chain through sigmoid,
// dropout and the average pools on `device`, fresh buffers as `fill` says.
// Each intermediate has one consumer, so with fill nan/unset all six of
// their buffers are fresh; x is a leaf (accumulates).
std::vector<float> chain_gradient(Device device, const char* fill, GradBufferStats* stats) {
  Generator gen(21);  // the same dropout mask every call
  Tensor x = testing::random_tensor({2, 3, 9, 9}, 22, -2.0f, 2.0f).to(device);
  x.set_requires_grad(true);
  GradFill scope(fill);
  Tensor h = sigmoid(x);
  h = avg_pool2d(h, 3, 1, 1);        // overlapping windows with padding: 9x9
  h = dropout(h, 0.5f, true, gen);
  h = avg_pool2d(h, 3, 2, 1);        // overlapping, stride 2: 5x5
  h = avg_pool2d(h, 2, 2, 0);        // tiling: 2x2, row 4 and column 4 in no window
  h = sigmoid(h);
  Tensor y = global_avg_pool(h);     // (2, 3, 1, 1)
  y.backward(testing::random_tensor(y.shape(), 23).to(device));
  if (stats) *stats = last_backward_grad_buffers();
  REQUIRE(x.grad().defined());
  return x.grad().to_vector();
}

void check_chain(Device device) {
  INFO("chain on " << device.str());
  GradBufferStats zero_path, fresh_path;
  const auto want = chain_gradient(device, "zero", &zero_path);
  CHECK(zero_path.fresh == 0);
  CHECK(zero_path.zeroed == 6);
  std::size_t nonzero = 0;
  for (float v : want) nonzero += v != 0.0f ? 1 : 0;
  CHECK(nonzero > want.size() / 4);  // dropout and the pools leave most of x in play
  for (const char* fill : {"nan", static_cast<const char*>(nullptr)}) {
    INFO("SCRATCHNET_GRAD_FILL=" << (fill ? fill : "(unset)"));
    const auto got = chain_gradient(device, fill, &fresh_path);
    CHECK(fresh_path.fresh == 6);
    CHECK(fresh_path.zeroed == 0);
    REQUIRE(got.size() == want.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) bad += got[i] == want[i] ? 0 : 1;
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("sigmoid, dropout and average pools write fresh buffers: equal to the zero-fill path",
          "[autograd]") {
  check_chain(Device::cpu());
}

// Not a check: prints the gradient-buffer zero-fill a step no longer does
// (the course's sizes, CPU): build-cpu/scratchnet_tests "[grad_fill_report]" -s
TEST_CASE("report: zero-fill bytes saved per step", "[.][grad_fill_report]") {
  struct Run {
    const char* name;
    int size, batch, divisor;
  };
  // Batch 2 keeps it quick; the activation buffers scale with the batch.
  for (const Run r : {Run{"lenet", 28, 2, 1}, Run{"resnet18", 96, 2, 1},
                      Run{"vgg11", 224, 2, 4}}) {
    GradBufferStats s;
    step_gradients(r.name, r.size, r.batch, r.divisor, Device::cpu(), nullptr, &s);
    std::printf("%-9s %3d px width/%d, per image: %zu fresh buffers %.3f MiB, %zu zeroed %.3f MiB\n",
                r.name, r.size, r.divisor, s.fresh, s.fresh_bytes / 1048576.0 / r.batch, s.zeroed,
                s.zeroed_bytes / 1048576.0 / r.batch);
  }
}

#ifdef SCRATCHNET_WITH_CUDA
TEST_CASE("[cuda] sigmoid, dropout and average pools write fresh buffers: equal to the "
          "zero-fill path",
          "[cuda][autograd]") {
  check_chain(Device::cuda(0));
}

TEST_CASE("[cuda] a training step with fresh buffers equals the zero-fill path: LeNet, ResNet-18",
          "[cuda][autograd][model]") {
  check_step_bit_equal("lenet", 28, 2, 1, Device::cuda(0));
  check_step_bit_equal("resnet18", 32, 2, 1, Device::cuda(0));
}

TEST_CASE("[cuda] a training step with fresh buffers equals the zero-fill path: VGG-11",
          "[cuda][autograd][model]") {
  check_step_bit_equal("vgg11", 224, 1, 16, Device::cuda(0));
}
#endif  // SCRATCHNET_WITH_CUDA
