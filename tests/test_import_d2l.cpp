// d2l-style nn.Sequential checkpoints ("0.weight", "net.3.weight") mapped onto
// our state_dict keys by position (train/import_d2l.h), and the hidden
// "[torch-models]" case that tests/torch_interop.py drives with PyTorch.
//
// No tolerances: loads are exact copies.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/error.h"
#include "models/models.h"
#include "test_files.h"
#include "train/import_d2l.h"
#include "train/safetensors.h"

using namespace scratchnet;
using scratchnet::testing::TempDir;

namespace {

// d2l's LeNet keys for our net.<i>: the same Sequential without the "net." prefix.
safetensors::File d2l_lenet_file(Module& source) {
  safetensors::File f;
  for (const auto& t : source.state_dict()) f.tensors.push_back({t.name.substr(4), t.tensor});
  // Writers sort keys by name: "0.bias", "0.weight", "11.bias", ... put "11" before "3".
  std::sort(f.tensors.begin(), f.tensors.end(),
            [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
  return f;
}

}  // namespace

TEST_CASE("a d2l-style LeNet checkpoint loads by position", "[import-d2l]") {
  Generator g1(1), g2(2);
  auto source = models::make("lenet", g1);
  auto target = models::make("lenet", g2);
  safetensors::File f = d2l_lenet_file(*source);
  REQUIRE(f.tensors[0].name == "0.bias");
  f = safetensors::adopt_sequential_keys(*target, std::move(f), "d2l.safetensors");
  safetensors::load_into(*target, f, "d2l.safetensors");
  const auto want = source->state_dict(), got = target->state_dict();
  REQUIRE(want.size() == got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].name);
    CHECK(got[i].tensor.to_vector() == want[i].tensor.to_vector());
  }
}

TEST_CASE("a Sequential checkpoint with a leading name ('module.') loads too", "[import-d2l]") {
  Generator g1(1), g2(2);
  auto source = models::make("lenet", g1);
  auto target = models::make("lenet", g2);
  safetensors::File f;
  for (const auto& t : source->state_dict())
    f.tensors.push_back({"module." + t.name.substr(4), t.tensor});
  f = safetensors::adopt_sequential_keys(*target, std::move(f), "x");
  safetensors::load_into(*target, f, "x");
  CHECK(target->state_dict()[8].tensor.to_vector() == source->state_dict()[8].tensor.to_vector());
}

TEST_CASE("our own keys and non-Sequential keys pass through unchanged", "[import-d2l]") {
  Generator g(1);
  auto m = models::make("lenet", g);
  safetensors::File own;
  for (const auto& t : m->state_dict()) own.tensors.push_back({t.name, t.tensor});
  const auto same = safetensors::adopt_sequential_keys(*m, own, "x");
  CHECK(same.tensors[0].name == "net.0.weight");
  safetensors::File other;
  other.tensors.push_back({"fc.weight", Tensor::zeros({2, 2})});
  const auto kept = safetensors::adopt_sequential_keys(*m, other, "x");
  REQUIRE(kept.tensors.size() == 1);
  CHECK(kept.tensors[0].name == "fc.weight");
  CHECK_THROWS_AS(safetensors::load_into(*m, kept, "x"), IoError);
}

TEST_CASE("a Sequential checkpoint that does not fit is refused with every mismatch listed",
          "[import-d2l]") {
  Generator g(1);
  auto m = models::make("lenet", g);
  safetensors::File f;
  for (const auto& t : m->state_dict()) {
    const std::string key = t.name.substr(4);
    // A LeNet with 100 hidden units instead of 120: two shapes differ.
    Shape s = t.tensor.shape();
    if (key == "7.weight" || key == "7.bias") s[0] = 100;
    if (key == "9.weight") s[1] = 100;
    f.tensors.push_back({key, Tensor::zeros(s)});
  }
  f.tensors.push_back({"13.weight", Tensor::zeros({3})});
  try {
    safetensors::adopt_sequential_keys(*m, f, "d2l.safetensors");
    FAIL("no IoError");
  } catch (const IoError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("d2l.safetensors") != std::string::npos);
    CHECK(msg.find("checkpoint 11 tensors, model 10") != std::string::npos);
    for (const char* part :
         {"#5 '7.weight' float32 (100, 400) vs the model's 'net.7.weight' float32 (120, 400)",
          "#6 '7.bias' float32 (100,) vs the model's 'net.7.bias' float32 (120,)",
          "#7 '9.weight' float32 (84, 100) vs the model's 'net.9.weight' float32 (84, 120)",
          "#11 '13.weight' float32 (3,) has no counterpart"})
      CHECK(msg.find(part) != std::string::npos);
    CHECK(msg.find("more") == std::string::npos);  // nothing hidden
  }
}

// Driven by tests/torch_interop.py, which writes, for each model M in
// $SCRATCHNET_INTEROP_DIR/models.txt ("name width_divisor" lines):
//   M.ours.safetensors   PyTorch weights of python/scratchnet_models.py's M
//   M.d2l.safetensors    the same weights under d2l's nn.Sequential keys
//   M.input.safetensors  "x", an input batch
// and reads back M.logits.safetensors ("logits" from ours, "logits_d2l" from
// the d2l file) and M.scratchnet.safetensors, our state_dict, for PyTorch to
// load strictly.
TEST_CASE("PyTorch models' weights load, run and save back", "[.][torch-models]") {
  const char* env = std::getenv("SCRATCHNET_INTEROP_DIR");
  REQUIRE(env != nullptr);
  const std::string dir = env;
  std::ifstream list(dir + "/models.txt");
  REQUIRE(list.good());
  std::string name;
  int width = 1, cases = 0;
  while (list >> name >> width) {
    INFO(name);
    Generator g1(1), g2(2);
    auto ours = models::make(name, g1, width);
    auto d2l = models::make(name, g2, width);
    const std::string p = dir + "/" + name;
    safetensors::load_into(*ours, safetensors::load(p + ".ours.safetensors"), name);
    auto f = safetensors::load(p + ".d2l.safetensors");
    f = safetensors::adopt_sequential_keys(*d2l, std::move(f), p + ".d2l.safetensors");
    safetensors::load_into(*d2l, f, name);
    const auto in = safetensors::load(p + ".input.safetensors");
    REQUIRE(in.tensors.size() == 1);
    ours->eval();
    d2l->eval();
    NoGradGuard no_grad;
    safetensors::save(p + ".logits.safetensors", {{"logits", (*ours)(in.tensors[0].tensor)},
                                                  {"logits_d2l", (*d2l)(in.tensors[0].tensor)}});
    safetensors::save(
        p + ".scratchnet.safetensors", ours->state_dict(),
        {{"format", "pt"}, {"model", name}, {"width_divisor", std::to_string(width)}});
    ++cases;
  }
  CHECK(cases > 0);
}
