// The models of models/: parameter counts and state_dict keys/shapes as
// PyTorch's (fixtures from tests/fixtures/make_fixtures.py), forward shapes
// at the course sizes, input-size checks, defaults, and LeNet's logits
// against PyTorch.
//
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// LeNet against PyTorch's float64 logits: atol = rtol = 1e-4. Our float32
// sums of length L (at most 400, the first Linear) round by ~6e-8 * sqrt(L)
// relative per layer, ~1e-6 over the network; 1e-4 leaves a 100x margin.
#include <list>
#include <sstream>
#include <tuple>

#include "core/allocator.h"
#include "core/autograd.h"
#include "layers/all.h"
#include "models/models.h"
#include "test_helpers.h"
#include "torch_fixture.h"

using namespace scratchnet;
using namespace scratchnet::testing;

namespace {

// VGG's Dropout layers keep a reference to the generator: it must outlive the
// model, so the generators live as long as the test process (a few bytes each).
std::shared_ptr<Module> build(const std::string& name, int divisor = 1, uint64_t seed = 1) {
  static std::list<Generator> generators;
  generators.emplace_back(seed);
  return models::make(name, generators.back(), divisor);
}

// Big models leave hundreds of MB in the CPU cache; other tests need none of it.
void release_cache() {
  CachingAllocator::of(Device::cpu()).release_cached();
}

void check_state_dict(const Module& m, const std::string& fixture) {
  std::vector<std::string> got;
  for (const auto& e : m.state_dict()) got.push_back(e.name + " " + shape_str(e.tensor.shape()));
  const auto want = read_lines(fixture);
  CHECK(got.size() == want.size());
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    INFO(fixture << " entry " << i);
    REQUIRE(got[i] == want[i]);
  }
}

}  // namespace

TEST_CASE("model names and the course defaults", "[models]") {
  CHECK(models::names() == std::vector<std::string>{"lenet", "alexnet", "vgg11", "vgg13", "vgg16",
                                                    "vgg19", "resnet18", "resnet34"});
  const auto l = models::defaults("lenet");
  CHECK(l.image_size == 28);
  CHECK(l.batch_size == 256);
  CHECK(l.lr == 0.9f);
  CHECK(l.epochs == 10);
  CHECK(models::defaults("alexnet").batch_size == 256);
  CHECK(models::defaults("alexnet").lr == 0.01f);
  CHECK(models::defaults("vgg16").image_size == 224);
  CHECK(models::defaults("vgg16").lr == 0.05f);
  CHECK(models::defaults("resnet34").image_size == 96);
  CHECK_THROWS_AS(models::defaults("resnet50"), ValueError);
  CHECK_THROWS_WITH(models::defaults("resnet50"), Catch::Contains("lenet, alexnet, vgg11"));
  Generator g(1);
  CHECK_THROWS_AS(models::make("mlp", g), ValueError);
  CHECK_THROWS_AS(models::make("lenet", g, 4), ValueError);
  CHECK_THROWS_AS(models::make("vgg11", g, 0), ValueError);
  CHECK_THROWS_AS(models::make("vgg11", g, 128), ValueError);  // 64 / 128 = 0 channels
}

TEST_CASE("every model's defaults size passes check_input_size", "[models]") {
  for (const auto& n : models::names()) {
    INFO(n);
    CHECK_NOTHROW(models::check_input_size(n, models::defaults(n).image_size));
  }
  CHECK_THROWS_AS(models::check_input_size("lenet", 32), ValueError);
  CHECK_THROWS_WITH(models::check_input_size("lenet", 32), Catch::Contains("28-31"));
  CHECK_THROWS_WITH(models::check_input_size("alexnet", 28), Catch::Contains("195-226"));
  CHECK_THROWS_WITH(models::check_input_size("alexnet", 227), Catch::Contains("course uses 224"));
  CHECK_THROWS_WITH(models::check_input_size("vgg11", 96), Catch::Contains("224-255"));
  CHECK_THROWS_WITH(models::check_input_size("resnet18", 16), Catch::Contains(">= 32"));
  CHECK_NOTHROW(models::check_input_size("resnet34", 224));
  CHECK_NOTHROW(models::check_input_size("vgg19", 240));
  CHECK_THROWS_AS(models::check_input_size("lenet", 0), ValueError);
  CHECK_THROWS_AS(models::check_input_size("nope", 28), ValueError);
  CHECK(models::accepted_sizes("lenet") == std::vector<int>{28, 29, 30, 31});
}

TEST_CASE("check_input_size agrees with the built models' shapes", "[models]") {
  // The size plans in models/ are a second description of the architecture:
  // the models' own output_shape must accept exactly the same sizes.
  for (const std::string n : {"lenet", "alexnet", "vgg11"}) {
    INFO(n);
    auto m = build(n, n == "vgg11" ? 64 : 1);  // the divisor changes no spatial size
    const auto ok = models::accepted_sizes(n, 300);
    for (int s = 1; s <= 300; ++s) {
      const bool planned = std::find(ok.begin(), ok.end(), s) != ok.end();
      bool built = true;
      Shape out;
      try {
        out = m->output_shape({2, 1, s, s});
      } catch (const ShapeError&) {
        built = false;
      }
      INFO("size " << s);
      CHECK(planned == built);
      if (built) CHECK(out == Shape{2, 10});
    }
  }
  auto r = build("resnet18");
  for (int s : {32, 33, 64, 96, 224, 255}) CHECK(r->output_shape({2, 1, s, s}) == Shape{2, 10});
  release_cache();
}

// Counts from torch 1.13 over ../shared/reference/torch_models.py; the
// fixtures as make_fixtures.py writes them (empty: no fixture for that model).
struct Expected {
  const char* name;
  int divisor;
  int64_t params;
  const char* fixture;
};

TEST_CASE("parameter counts and state_dict keys equal PyTorch's", "[models]") {
  const Expected want[] = {{"lenet", 1, 61706, "state_dict_lenet.txt"},
                           {"alexnet", 1, 60314442, "state_dict_alexnet.txt"},
                           {"vgg11", 1, 128806154, "state_dict_vgg11.txt"},
                           {"vgg11", 4, 43093322, "state_dict_vgg11_w4.txt"},
                           {"resnet18", 1, 11178378, "state_dict_resnet18.txt"},
                           {"resnet34", 1, 21290250, ""}};
  for (const auto& w : want) {
    INFO(w.name << " width divisor " << w.divisor);
    auto m = build(w.name, w.divisor);
    CHECK(count_parameters(*m) == w.params);
    if (*w.fixture) check_state_dict(*m, w.fixture);
    m.reset();
    release_cache();
  }
}

TEST_CASE("parameter counts of the large VGGs equal PyTorch's", "[models][slow]") {
  const Expected want[] = {
      {"vgg13", 1, 128990666, ""}, {"vgg16", 1, 134300362, ""}, {"vgg19", 1, 139610058, ""}};
  for (const auto& w : want) {
    INFO(w.name);
    CHECK(count_parameters(*build(w.name)) == w.params);
    release_cache();
  }
}

TEST_CASE("models are initialised as the notebook, reproducibly", "[models]") {
  auto a = build("resnet18", 1, 5), b = build("resnet18", 1, 5), c = build("resnet18", 1, 6);
  const auto pa = a->state_dict(), pb = b->state_dict(), pc = c->state_dict();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    const NamedTensor& e = pa[i];
    INFO(e.name);
    if (e.tensor.dtype() != DType::F32) continue;
    const auto v = e.tensor.to_vector();
    CHECK(v == pb[i].tensor.to_vector());
    const Shape& s = e.tensor.shape();
    const bool is_bn = e.name.find(".bn") != std::string::npos || e.name.rfind("0.1.", 0) == 0;
    if (s.size() >= 2) {  // conv (K, C, R, S) or linear (OUT, IN): xavier_uniform_
      const int64_t rs = s.size() == 4 ? s[2] * s[3] : 1;
      const double bound = std::sqrt(6.0 / static_cast<double>((s[0] + s[1]) * rs));
      float m = 0;
      for (float x : v) m = std::max(m, std::fabs(x));
      CHECK(m <= bound);
      CHECK(m > 0.5 * bound);
      CHECK(v != pc[i].tensor.to_vector());
    } else if (is_bn) {
      const bool ones = e.name.find("weight") != std::string::npos ||
                        e.name.find("running_var") != std::string::npos;
      CHECK(v == std::vector<float>(v.size(), ones ? 1.0f : 0.0f));
    }
  }
}

TEST_CASE("forward shapes at the course sizes", "[models]") {
  {
    auto m = build("lenet");
    CHECK(m->forward(random_tensor({2, 1, 28, 28}, 1)).shape() == Shape{2, 10});
  }
  {
    auto m = build("resnet18");
    Tensor y = m->forward(random_tensor({2, 1, 96, 96}, 2));
    CHECK(y.shape() == Shape{2, 10});
    for (float v : y.to_vector()) CHECK(std::isfinite(v));
    m->eval();
    NoGradGuard ng;
    CHECK(m->forward(random_tensor({1, 1, 96, 96}, 3)).shape() == Shape{1, 10});
  }
  {
    auto m = build("vgg11", 4);
    m->eval();
    NoGradGuard ng;
    CHECK(m->forward(random_tensor({1, 1, 224, 224}, 4)).shape() == Shape{1, 10});
  }
  release_cache();
}

TEST_CASE("forward shapes of the full-size 224 models", "[models][slow]") {
  NoGradGuard ng;
  for (const std::string n : {"alexnet", "vgg11", "resnet34"}) {
    INFO(n);
    auto m = build(n);
    m->eval();
    const int s = models::defaults(n).image_size;
    CHECK(m->forward(random_tensor({1, 1, s, s}, 5)).shape() == Shape{1, 10});
    release_cache();
  }
}

TEST_CASE("summary lists the leaf layers in forward order", "[models]") {
  auto r = build("resnet18");
  const auto info = summarize(*r, {1, 1, 96, 96});
  REQUIRE(!info.empty());
  CHECK(info[0].name == "0.0");
  CHECK(info[0].description == "Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3))");
  CHECK(info[0].output_shape == Shape{1, 64, 48, 48});
  CHECK(info[0].num_params == 64 * 49 + 64);
  CHECK(info[3].output_shape == Shape{1, 64, 24, 24});  // after the stem's max pool
  CHECK(info[4].name == "1.0.conv1");
  CHECK(info[5].name == "1.0.bn1");
  CHECK(info.back().name == "7");
  CHECK(info.back().output_shape == Shape{1, 10});
  int64_t total = 0;
  for (const auto& i : info) total += i.num_params;
  CHECK(total == 11178378);

  auto l = build("lenet");
  const auto li = summarize(*l, {1, 1, 28, 28});
  REQUIRE(li.size() == 12);
  CHECK(li[0].name == "net.0");
  CHECK(li[6].output_shape == Shape{1, 400});
  CHECK_THROWS_AS(summarize(*l, {1, 1, 32, 32}), ShapeError);
}

TEST_CASE("LeNet's logits match PyTorch's", "[models]") {
  const auto fx = TorchFixture::load("lenet_forward.txt");
  auto m = build("lenet");
  fx.load_weights(*m);
  REQUIRE(fx.formulas.size() == m->state_dict().size());  // every weight loaded by name
  m->eval();
  NoGradGuard ng;
  Tensor y = m->forward(fx.tensor("input"));
  require_close(y.to_vector(), fx.values("logits"), 1e-4, 1e-4, "lenet logits");
}

// Same weights on both devices (same seed), the same batch: CUDA against the
// CPU reference, forward in training mode (BN batch statistics), the running
// statistics, and the gradients after a cross-entropy backward. Tolerance:
// float32 on both sides with different summation orders, ~6e-8 * sqrt(L) per
// layer (L up to 512*9 = 4608 for ResNet: ~4e-6) over ~20 layers, BN
// renormalising at each; atol = rtol = 1e-4 * tolerance_scale(L) per the rule.
TEST_CASE("models on CUDA match the CPU", "[models][cuda]") {
  const Device gpu = Device::cuda();
  for (const auto& [name, size, L] :
       {std::tuple<const char*, int, int64_t>{"lenet", 28, 400}, {"resnet18", 64, 4608}}) {
    INFO(name);
    auto cpu_model = build(name, 1, 21), gpu_model = build(name, 1, 21);
    gpu_model->to(gpu);
    Tensor x = random_tensor({4, 1, size, size}, 22);
    Tensor labels = Tensor::from_vector<int32_t>({1, 3, 5, 7}, {4});
    Tensor yc = cpu_model->forward(x), yg = gpu_model->forward(x.to(gpu));
    const double tol = 1e-4 * tolerance_scale(L);
    require_close(yg.to_vector(), yc.to_vector(), tol, tol, "logits");
    cross_entropy(yc, labels).backward();
    cross_entropy(yg, labels.to(gpu)).backward();
    const auto sc = cpu_model->state_dict(), sg = gpu_model->state_dict();
    REQUIRE(sc.size() == sg.size());
    for (std::size_t i = 0; i < sc.size(); ++i) {
      INFO(sc[i].name);
      if (sc[i].tensor.dtype() != DType::F32) {
        CHECK(sg[i].tensor.device() == Device::cpu());  // num_batches_tracked stays on the host
        CHECK(sg[i].tensor.host<int64_t>()[0] == sc[i].tensor.host<int64_t>()[0]);
        continue;
      }
      CHECK(sg[i].tensor.is_cuda());
      require_close(sg[i].tensor.to_vector(), sc[i].tensor.to_vector(), tol, tol, sc[i].name);
      if (sc[i].tensor.grad().defined())
        require_close(sg[i].tensor.grad().to_vector(), sc[i].tensor.grad().to_vector(), tol, tol,
                      sc[i].name + " grad");
    }
  }
}
