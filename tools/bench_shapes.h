// The layer shapes `scratchnet bench` times and the [cuda] tests check
// (tests/test_cuda_shapes.cpp): every layer of LeNet, AlexNet, VGG-11/13/16/19
// and ResNet-18/34 as the course defines them (shared/reference/
// torch_models.py), in execution order, with PyTorch's module names.
//
// Why a table and not a walk over the engine's model: the engine's modules
// compose their children in code (a Residual adds its skip path), so only a
// forward pass knows the data flow, and the kernel bench must not depend on a
// model being buildable. The table is a small shape walker instead: each
// layer's input is the previous layer's output, computed with the kernels'
// own shape helpers (conv2d_params, pool2d_params ...), so a mistake in one
// layer breaks every layer after it. tests/test_bench.cpp checks the table
// against the engine's models (weight shapes, strides, paddings, batch size).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"
#include "kernels/pool2d.h"

namespace scratchnet::tools::bench {

enum class Kind {
  Conv,
  Linear,
  MaxPool,
  AvgPool,
  GlobalAvgPool,
  BatchNorm,
  ReLU,
  Sigmoid,
  Add,
  Dropout,
  CrossEntropy,
  Sgd
};

const char* kind_name(Kind k);  // the --op name: "conv2d", "linear", "maxpool", ...

struct LayerShape {
  std::string model;
  std::string
      layer;  // PyTorch module name ("net.0", "2.0.conv1"); functional ops get "<block>(relu)"
  Kind kind = Kind::ReLU;
  kernels::Conv2dParams conv{};
  kernels::LinearParams linear{};
  kernels::Pool2dParams pool{};
  kernels::BatchNormParams bn{};
  int64_t n = 0;  // elements of the input (pointwise ops), parameters (Sgd), rows (CrossEntropy)
  int planes = 0, hw = 0;     // GlobalAvgPool: N*C planes of hw values; CrossEntropy: hw = classes
  int count = 1;              // how many layers of the model share this shape (after dedup)
  std::string shape() const;  // "N=256 C=96 H=54 W=54 K=256 R=5 S=5 s=1 p=2"
  std::string key() const;    // kind + shape: identical layers collapse on it
};

// The models the table knows, with the course's input size and batch size.
struct BenchModel {
  std::string name;
  int image_size;
  int batch_size;
};
const std::vector<BenchModel>& bench_models();
const BenchModel& bench_model(const std::string& name);  // throws ValueError naming the choices

// Every layer of `model` at batch `batch` and input `image_size` (0: the
// course's values), plus the loss (CrossEntropy over 10 classes) and the SGD
// step over all parameters; width_divisor divides VGG's conv channels as
// train's --width-divisor does. Throws ShapeError when the input is too small.
std::vector<LayerShape> model_layers(const std::string& model, int batch = 0, int image_size = 0,
                                     int width_divisor = 1);

// Identical shapes collapse into one row whose `count` says how many layers
// it stands for; the first layer name is kept.
std::vector<LayerShape> dedup(const std::vector<LayerShape>& layers);

// Number of learnable parameters implied by the table (for the SGD row and
// for checking against the engine's model).
int64_t parameter_count(const std::vector<LayerShape>& layers);

}  // namespace scratchnet::tools::bench
