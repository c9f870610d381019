// Reads the PyTorch fixtures of tests/fixtures (written by make_fixtures.py):
//   state_dict_<model>.txt: "key (d0, d1, ...)" per state_dict entry, in order;
//   *_forward.txt: "formula KEY NDIM DIMS... OFFSET SCALE K" (a parameter
//     filled with float32(OFFSET + SCALE * sin(12.9898 * i + 78.233 * K))) and
//     "tensor NAME NDIM DIMS... VALUES..." lines.
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "layers/module.h"

namespace scratchnet::testing {

inline std::string fixture_path(const std::string& file) {
  return std::string(SCRATCHNET_SOURCE_DIR) + "/tests/fixtures/" + file;
}

inline std::vector<std::string> read_lines(const std::string& file) {
  std::ifstream in(fixture_path(file));
  INFO("fixture " << fixture_path(file));
  REQUIRE(in.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') lines.push_back(line);
  return lines;
}

struct TorchFixture {
  struct Formula {
    std::string key;
    Shape shape;
    double offset = 0, scale = 0;
    int k = 0;
  };
  std::vector<Formula> formulas;
  std::map<std::string, std::pair<Shape, std::vector<float>>> tensors;

  static TorchFixture load(const std::string& file) {
    TorchFixture f;
    for (const auto& line : read_lines(file)) {
      std::istringstream is(line);
      std::string tag, name;
      int ndim = 0;
      is >> tag >> name >> ndim;
      Shape shape(static_cast<std::size_t>(ndim));
      for (auto& d : shape) is >> d;
      if (tag == "formula") {
        Formula fm{name, shape};
        is >> fm.offset >> fm.scale >> fm.k;
        f.formulas.push_back(fm);
      } else {
        REQUIRE(tag == "tensor");
        std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
        for (auto& x : v) {
          double d;
          is >> d;
          x = static_cast<float>(d);
        }
        f.tensors[name] = {shape, v};
      }
      INFO("fixture line for " << name);
      REQUIRE_FALSE(is.fail());
    }
    return f;
  }

  // Fills, by name, every parameter the fixture gives; each must exist in
  // the module's state_dict with the same shape.
  void load_weights(const Module& m) const {
    const auto sd = m.state_dict();
    for (const auto& fm : formulas) {
      INFO("parameter " << fm.key);
      auto it = std::find_if(sd.begin(), sd.end(),
                             [&](const NamedTensor& t) { return t.name == fm.key; });
      REQUIRE(it != sd.end());
      REQUIRE(it->tensor.shape() == fm.shape);
      float* p = it->tensor.host<float>();
      for (int64_t i = 0; i < it->tensor.numel(); ++i)
        p[i] = static_cast<float>(
            fm.offset + fm.scale * std::sin(12.9898 * static_cast<double>(i) + 78.233 * fm.k));
    }
  }

  const std::vector<float>& values(const std::string& name) const {
    INFO("fixture tensor " << name);
    REQUIRE(tensors.count(name) == 1);
    return tensors.at(name).second;
  }
  Tensor tensor(const std::string& name) const {
    values(name);
    const auto& [shape, v] = tensors.at(name);
    return Tensor::from_vector(v, shape);
  }
};

}  // namespace scratchnet::testing
