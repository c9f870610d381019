// Fused ops and the fusion pass (issue 12, part 2) on the CPU.
// batch_norm_relu and add_relu do the unfused composition's float operations
// in the same order, so on the CPU they must equal relu(batch_norm(.)) and
// relu(add(.)) bit for bit, forward and backward (exact comparison, no
// tolerance); add_relu's gradient is also checked against central finite
// differences (test_helpers.h's rule, reduction length 1, points within 0.05
// of the kink skipped). The fusion pass (Chain, Residual) must leave names,
// state_dict and summary alone and give the unfused model's results exactly:
// a ResNet-18 training step with fusion on and off, same loss, logits,
// gradients, running statistics and saved-activation bytes; conv2d_relu and
// linear_relu (VGG's and AlexNet's Conv2d + ReLU, and their classifiers'
// Linear + ReLU) likewise, and VGG-11 and AlexNet steps.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/all.h"
#include "models/models.h"
#include "test_helpers.h"
#include "train/optimizer.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;

namespace {

// Exact equality, element for element (+0 == -0: the unfused gradient passes
// through a zero-filled buffer, where 0 + (-0) = +0).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

void require_same(const Tensor& got, const Tensor& want, const std::string& what) {
  INFO(what << " " << got.str() << " vs " << want.str());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(same_bits(got.to_vector(), want.to_vector()));
}

struct BnState {
  Tensor x, gamma, beta, rmean, rvar;
  BnState(const Shape& xs, uint64_t seed, float lo, float hi) {
    const int C = static_cast<int>(xs[1]);
    x = random_tensor(xs, seed, lo, hi).set_requires_grad(true);
    gamma = random_tensor({C}, seed + 1, 0.5f, 1.5f).set_requires_grad(true);
    // beta around 0 so that the ReLU cuts about half of the values
    beta = random_tensor({C}, seed + 2, -0.5f, 0.5f).set_requires_grad(true);
    rmean = random_tensor({C}, seed + 3, lo, hi);
    rvar = random_tensor({C}, seed + 4, 0.5f, 2.0f);
  }
};

}  // namespace

TEST_CASE("batch_norm_relu equals relu(batch_norm) bit for bit, forward and backward",
          "[fusion][batchnorm]") {
  struct Case {
    Shape xs;
    float lo, hi;
  };
  // ResNet-like shapes, BatchNorm1d, and |mean| >> std (the cancellation case).
  const std::vector<Case> cases = {{{4, 8, 6, 6}, -1.0f, 1.0f},
                                   {{2, 16, 3, 3}, 2.0f, 4.0f},
                                   {{8, 5}, -1.0f, 1.0f},
                                   {{4, 3, 5, 5}, 1000.0f, 1001.0f}};
  uint64_t seed = 7000;
  for (const auto& c : cases)
    for (bool training : {true, false}) {
      INFO("x " << shape_str(c.xs) << " in [" << c.lo << ", " << c.hi << ") training=" << training);
      BnState a(c.xs, seed += 10, c.lo, c.hi), b(c.xs, seed, c.lo, c.hi);
      Tensor ya = relu(batch_norm(a.x, a.gamma, a.beta, a.rmean, a.rvar, training));
      Tensor yb = batch_norm_relu(b.x, b.gamma, b.beta, b.rmean, b.rvar, training);
      require_same(yb, ya, "y");
      require_same(b.rmean, a.rmean, "running_mean");
      require_same(b.rvar, a.rvar, "running_var");
      const std::vector<float> yv = yb.to_vector();
      const auto zeros = std::count(yv.begin(), yv.end(), 0.0f);
      CHECK(zeros > 0);  // the ReLU mask matters in this case
      CHECK(zeros < static_cast<long>(yv.size()));
      Tensor seed_grad = random_tensor(ya.shape(), seed + 5);
      ya.backward(seed_grad);
      yb.backward(seed_grad);
      require_same(b.x.grad(), a.x.grad(), "dx");
      require_same(b.gamma.grad(), a.gamma.grad(), "dgamma");
      require_same(b.beta.grad(), a.beta.grad(), "dbeta");
    }
}

TEST_CASE("batch_norm_relu saves what relu(batch_norm) saves, no more", "[fusion][memory]") {
  BnState a({4, 8, 6, 6}, 11, -1.0f, 1.0f), b({4, 8, 6, 6}, 11, -1.0f, 1.0f);
  Tensor ya = relu(batch_norm(a.x, a.gamma, a.beta, a.rmean, a.rvar, true));
  Tensor yb = batch_norm_relu(b.x, b.gamma, b.beta, b.rmean, b.rvar, true);
  // x and gamma are leaves that require grad (left out like parameters); the
  // statistics and the ReLU output remain on both sides. The pre-ReLU tensor,
  // never saved, is not even allocated when fused.
  CHECK(saved_memory(yb).bytes == saved_memory(ya).bytes);
  CHECK(saved_memory(yb).storages == saved_memory(ya).storages);
}

namespace {

// A weighted op with a fused ReLU against relu(op): `fused(x, w, b)` and
// `plain(x, w, b)` run on clones of the same leaves; y, the saved bytes and
// every gradient must be equal bit for bit, and the ReLU must cut some values.
template <class Fused, class Plain>
void require_fused_same(const Tensor& x, const Tensor& w, const Tensor& b, uint64_t seed,
                        Fused fused, Plain plain) {
  auto leaf = [](const Tensor& t) {
    return t.defined() ? t.detach().clone().set_requires_grad(true) : Tensor();
  };
  Tensor xa = leaf(x), wa = leaf(w), ba = leaf(b), xb = leaf(x), wb = leaf(w), bb = leaf(b);
  Tensor ya = relu(plain(xa, wa, ba));
  Tensor yb = fused(xb, wb, bb);
  require_same(yb, ya, "y");
  const std::vector<float> yv = yb.to_vector();
  const auto zeros = std::count(yv.begin(), yv.end(), 0.0f);
  CHECK(zeros > 0);  // the ReLU mask matters in this case
  CHECK(zeros < static_cast<long>(yv.size()));
  CHECK(saved_memory(yb).bytes == saved_memory(ya).bytes);
  Tensor g = random_tensor(ya.shape(), seed);
  ya.backward(g);
  yb.backward(g);
  require_same(xb.grad(), xa.grad(), "dx");
  require_same(wb.grad(), wa.grad(), "dw");
  if (b.defined()) require_same(bb.grad(), ba.grad(), "db");
}

}  // namespace

TEST_CASE("conv2d_relu equals relu(conv2d) bit for bit, forward and backward", "[fusion][conv2d]") {
  struct Case {
    Shape xs, ws;
    int stride, pad;
    bool bias;
  };
  // AlexNet's 11x11 stride 4 (small), a VGG 3x3, a 1x1 without bias.
  const std::vector<Case> cases = {{{2, 1, 23, 23}, {4, 1, 11, 11}, 4, 2, true},
                                   {{3, 4, 7, 7}, {6, 4, 3, 3}, 1, 1, true},
                                   {{2, 5, 4, 4}, {3, 5, 1, 1}, 1, 0, false}};
  uint64_t seed = 7500;
  for (const auto& c : cases) {
    INFO("x " << shape_str(c.xs) << " w " << shape_str(c.ws));
    seed += 10;
    const Tensor x = random_tensor(c.xs, seed), w = random_tensor(c.ws, seed + 1);
    const Tensor b = c.bias ? random_tensor({c.ws[0]}, seed + 2) : Tensor();
    require_fused_same(
        x, w, b, seed + 3,
        [&](const Tensor& x_, const Tensor& w_, const Tensor& b_) {
          return conv2d_relu(x_, w_, b_, c.stride, c.pad);
        },
        [&](const Tensor& x_, const Tensor& w_, const Tensor& b_) {
          return conv2d(x_, w_, b_, c.stride, c.pad);
        });
  }
}

TEST_CASE("linear_relu equals relu(linear) bit for bit, forward and backward", "[fusion][linear]") {
  struct Case {
    int N, IN, OUT;
    bool bias;
  };
  // An AlexNet / VGG classifier layer scaled down at batch 1 and 3 (the CPU's
  // transposed small-batch form), a LeNet layer at a larger batch, no bias.
  const std::vector<Case> cases = {
      {1, 144, 64, true}, {3, 392, 64, true}, {40, 400, 120, true}, {5, 33, 17, false}};
  uint64_t seed = 7700;
  for (const auto& c : cases) {
    INFO("linear N=" << c.N << " in=" << c.IN << " out=" << c.OUT << " bias=" << c.bias);
    seed += 10;
    const Tensor x = random_tensor({c.N, c.IN}, seed);
    const Tensor w = random_tensor({c.OUT, c.IN}, seed + 1, -0.1f, 0.1f);
    const Tensor b = c.bias ? random_tensor({c.OUT}, seed + 2) : Tensor();
    require_fused_same(
        x, w, b, seed + 3,
        [](const Tensor& x_, const Tensor& w_, const Tensor& b_) {
          Tensor y = linear_relu(x_, w_, b_);
          CHECK(std::string(y.grad_fn()->name) == "linear_relu");
          return y;
        },
        [](const Tensor& x_, const Tensor& w_, const Tensor& b_) { return linear(x_, w_, b_); });
  }
}

TEST_CASE("add_relu equals relu(add) bit for bit and has the right gradient", "[fusion]") {
  const Shape s{3, 4, 5, 5};
  Tensor a1 = random_tensor(s, 21).set_requires_grad(true);
  Tensor b1 = random_tensor(s, 22).set_requires_grad(true);
  Tensor a2 = a1.detach().clone().set_requires_grad(true);
  Tensor b2 = b1.detach().clone().set_requires_grad(true);
  Tensor y1 = relu(add(a1, b1)), y2 = add_relu(a2, b2);
  require_same(y2, y1, "y");
  Tensor g = random_tensor(s, 23);
  y1.backward(g);
  y2.backward(g);
  require_same(a2.grad(), a1.grad(), "da");
  require_same(b2.grad(), b1.grad(), "db");
  CHECK(saved_memory(add_relu(a2, b2)).bytes == static_cast<std::size_t>(a2.numel()) * 4);

  // One operand twice: both contributions reach the same gradient.
  Tensor x = random_tensor({64}, 24).set_requires_grad(true);
  Tensor x2 = x.detach().clone().set_requires_grad(true);
  add_relu(x, x).backward(Tensor::full({64}, 1.0f));
  relu(add(x2, x2)).backward(Tensor::full({64}, 1.0f));
  require_same(x.grad(), x2.grad(), "d(x + x)");

  // An operand that needs no gradient gets none.
  Tensor c = random_tensor(s, 25);
  Tensor a3 = random_tensor(s, 26).set_requires_grad(true);
  add_relu(a3, c).backward(g);
  CHECK(!c.grad().defined());

  // Finite differences away from the kink.
  Tensor fa = random_tensor({2, 3, 4}, 27).set_requires_grad(true);
  Tensor fb = random_tensor({2, 3, 4}, 28).set_requires_grad(true);
  const auto av = fa.to_vector(), bv = fb.to_vector();
  auto near_kink = [&](int64_t i) { return std::fabs(av[i] + bv[i]) < 0.05f; };
  check_gradient([&] { return add_relu(fa, fb); }, fa, 1, "add_relu da", near_kink);
  check_gradient([&] { return add_relu(fa, fb); }, fb, 1, "add_relu db", near_kink);

  CHECK_THROWS_AS(add_relu(a1, random_tensor({3, 4, 5}, 29)), ShapeError);
}

TEST_CASE("the fusion pass keeps a Sequential's names, summary and results", "[fusion][layers]") {
  auto build = [] {
    Generator g(31);
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Conv2d>(g, 2, 4, 3, 1, 1));
    seq->add(std::make_shared<BatchNorm2d>(4));
    seq->add(std::make_shared<ReLU>());
    seq->add(std::make_shared<MaxPool2d>(2));
    seq->add(std::make_shared<BatchNorm2d>(4));  // a BatchNorm not followed by ReLU
    seq->add(std::make_shared<Flatten>());
    seq->add(std::make_shared<Linear>(g, 4 * 4 * 4, 6));
    seq->add(std::make_shared<BatchNorm1d>(6));
    seq->add(std::make_shared<ReLU>());
    return seq;
  };
  // A Conv2d followed by a ReLU (VGG, AlexNet): conv2d_relu when fused.
  auto conv_relu = [] {
    Generator g(34);
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Conv2d>(g, 2, 3, 3, 1, 1));
    seq->add(std::make_shared<ReLU>());
    return seq;
  };
  {
    auto cf = conv_relu(), cp = conv_relu();
    cp->set_fusion(false);
    Tensor x = random_tensor({2, 2, 5, 5}, 35);
    Tensor yf = (*cf)(x), yp = (*cp)(x);
    CHECK(std::string(yf.grad_fn()->name) == "conv2d_relu");
    CHECK(std::string(yp.grad_fn()->name) == "relu");
    require_same(yf, yp, "conv + ReLU output");
  }
  {  // A Linear followed by a ReLU (the AlexNet / VGG classifiers): linear_relu.
    Generator g1(36), g2(36);  // outlive the models (Dropout keeps a reference)
    auto fc_relu = [](Generator& g) {
      auto seq = std::make_shared<Sequential>();
      seq->add(std::make_shared<Linear>(g, 12, 9));
      seq->add(std::make_shared<ReLU>());
      seq->add(std::make_shared<Dropout>(0.5f, g));
      return seq;
    };
    auto ff = fc_relu(g1), fp = fc_relu(g2);
    fp->set_fusion(false);
    ff->eval();
    fp->eval();
    Tensor x = random_tensor({4, 12}, 37).set_requires_grad(true);
    Tensor yf = (*ff)(x), yp = (*fp)(x);
    CHECK(std::string(yf.grad_fn()->name) == "linear_relu");
    CHECK(std::string(yp.grad_fn()->name) == "relu");
    require_same(yf, yp, "linear + ReLU output");
    const auto sf = ff->state_dict(), sp = fp->state_dict();
    REQUIRE(sf.size() == sp.size());
    for (std::size_t i = 0; i < sf.size(); ++i) CHECK(sf[i].name == sp[i].name);
    const auto inf = summarize(*ff, {4, 12}), inp = summarize(*fp, {4, 12});
    REQUIRE(inf.size() == 3);  // Linear, ReLU and Dropout all listed
    REQUIRE(inp.size() == 3);
    for (std::size_t i = 0; i < inf.size(); ++i) CHECK(inf[i].description == inp[i].description);
  }
  auto fused = build(), plain = build();
  plain->set_fusion(false);
  CHECK(fused->fusion());
  CHECK_FALSE(plain->fusion());
  CHECK_FALSE((*plain)[1].fusion());  // set_fusion reaches the children
  const auto sf = fused->state_dict(), sp = plain->state_dict();
  REQUIRE(sf.size() == sp.size());
  for (std::size_t i = 0; i < sf.size(); ++i) CHECK(sf[i].name == sp[i].name);
  const auto inf = summarize(*fused, {3, 2, 8, 8}), inp = summarize(*plain, {3, 2, 8, 8});
  REQUIRE(inf.size() == inp.size());
  REQUIRE(inf.size() == 9);  // both the BatchNorm and its ReLU are listed
  for (std::size_t i = 0; i < inf.size(); ++i) {
    CHECK(inf[i].name == inp[i].name);
    CHECK(inf[i].description == inp[i].description);
  }
  Tensor x = random_tensor({3, 2, 8, 8}, 32);
  Tensor yf = (*fused)(x), yp = (*plain)(x);
  require_same(yf, yp, "output");
  // The last BatchNorm1d + ReLU ran as one op only with fusion on.
  CHECK(std::string(yf.grad_fn()->name) == "batch_norm_relu");
  CHECK(std::string(yp.grad_fn()->name) == "relu");
  Tensor g = random_tensor(yf.shape(), 33);
  yf.backward(g);
  yp.backward(g);
  const auto pf = fused->named_parameters(), pp = plain->named_parameters();
  for (std::size_t i = 0; i < pf.size(); ++i)
    require_same(pf[i].tensor.grad(), pp[i].tensor.grad(), pf[i].name + " grad");
}

namespace {

struct Step {
  std::vector<float> logits, loss;
  std::vector<NamedTensor> params, buffers;
  std::size_t saved_bytes = 0;
};

// Two SGD steps of a model at `size` px, batch 2; the state after them.
Step model_steps(const std::string& name, int size, int width_divisor, bool fusion) {
  Generator gen(41);
  auto model = models::make(name, gen, width_divisor);
  model->set_fusion(fusion);
  train::SGD opt(pack_parameters(*model), train::SgdConfig{0.05f, 0.9f, 5e-4f, false});
  Tensor x = random_tensor({2, 1, size, size}, 42, 0.0f, 1.0f);
  Tensor labels = Tensor::from_vector(std::vector<int32_t>{3, 7}, {2});
  Step out;
  for (int step = 0; step < 2; ++step) {
    opt.zero_grad();
    Tensor logits = (*model)(x);
    Tensor loss = cross_entropy(logits, labels);
    if (step == 0) out.saved_bytes = saved_memory(loss).bytes;
    out.logits = logits.to_vector();
    out.loss = loss.to_vector();
    loss.backward();
    if (step == 0) {
      for (const auto& p : model->named_parameters())
        out.params.push_back({p.name, p.tensor.grad().clone()});
    }
    opt.step();
  }
  for (const auto& p : model->named_parameters()) out.params.push_back({p.name, p.tensor.clone()});
  for (const auto& b : model->named_buffers()) out.buffers.push_back({b.name, b.tensor.clone()});
  return out;
}

}  // namespace

TEST_CASE("a residual block ends in add_relu when fused", "[fusion][layers]") {
  Generator g(51);
  Residual blk(g, 4, 4);
  Tensor x = random_tensor({2, 4, 5, 5}, 52).set_requires_grad(true);
  CHECK(std::string(blk.forward(x).grad_fn()->name) == "add_relu");
  blk.set_fusion(false);
  CHECK(std::string(blk.forward(x).grad_fn()->name) == "relu");
}

namespace {

void require_same_steps(const Step& on, const Step& off) {
  CHECK(same_bits(on.logits, off.logits));
  CHECK(same_bits(on.loss, off.loss));
  CHECK(on.saved_bytes == off.saved_bytes);
  REQUIRE(on.params.size() == off.params.size());
  for (std::size_t i = 0; i < on.params.size(); ++i) {
    INFO(on.params[i].name << (i < on.params.size() / 2 ? " gradient" : " after two steps"));
    CHECK(on.params[i].name == off.params[i].name);
    CHECK(same_bits(on.params[i].tensor.to_vector(), off.params[i].tensor.to_vector()));
  }
  REQUIRE(on.buffers.size() == off.buffers.size());
  for (std::size_t i = 0; i < on.buffers.size(); ++i) {
    INFO(on.buffers[i].name);
    const Tensor &a = on.buffers[i].tensor, &b = off.buffers[i].tensor;
    if (a.dtype() == DType::F32)
      CHECK(same_bits(a.to_vector(), b.to_vector()));
    else
      CHECK(a.host<int64_t>()[0] == b.host<int64_t>()[0]);  // num_batches_tracked
  }
}

}  // namespace

TEST_CASE("ResNet-18 trains bit for bit the same with fusion on and off", "[fusion][models]") {
  require_same_steps(model_steps("resnet18", 32, 1, true), model_steps("resnet18", 32, 1, false));
}

TEST_CASE("VGG-11 (width / 16) trains bit for bit the same with fusion on and off",
          "[fusion][models]") {
  // Every Conv2d + ReLU runs as conv2d_relu when fused (and dropout draws the
  // same masks: each model has its own generator, seeded alike).
  require_same_steps(model_steps("vgg11", 224, 16, true), model_steps("vgg11", 224, 16, false));
}

TEST_CASE("AlexNet (195 px) trains bit for bit the same with fusion on and off",
          "[fusion][models]") {
  // Conv2d + ReLU as conv2d_relu, the classifier's Linear + ReLU (linear1 +
  // rl6, linear2 + rl7) as linear_relu.
  require_same_steps(model_steps("alexnet", 195, 1, true), model_steps("alexnet", 195, 1, false));
}
