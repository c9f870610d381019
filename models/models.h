// The course's CNNs, built from layers/ exactly as
// ../shared/reference/torch_models.py defines them: same layers, order,
// biases and state_dict keys ("net.0.weight"; "conv1.weight", "linear1.bias";
// "vgg_block0.conv0.weight", "last.1.weight"; ResNet as one nn.Sequential:
// "0.0.weight", "0.1.running_mean", "1.0.conv1.weight", ..., "7.weight").
// One-channel input (Fashion-MNIST), 10 classes.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"

namespace scratchnet::models {

struct ModelDefaults {
  int image_size;  // square input side in pixels
  int batch_size;
  float lr;
  int epochs;
};

struct ModelEntry {
  const char* name;
  ModelDefaults defaults;
};

// The course's training settings (AlexNet: batch 256 as the issue and torch_bench; ResNet
// is trained at 96 px in the course).
// clang-format off
inline constexpr ModelEntry kModelTable[] = {
    //  name         image  batch  lr     epochs
    {"lenet",     {  28,   256,   0.9f,  10}},
    {"alexnet",   { 224,   256,   0.01f, 10}},
    {"vgg11",     { 224,   128,   0.05f, 10}},
    {"vgg13",     { 224,   128,   0.05f, 10}},
    {"vgg16",     { 224,   128,   0.05f, 10}},
    {"vgg19",     { 224,   128,   0.05f, 10}},
    {"resnet18",  {  96,   256,   0.05f, 10}},
    {"resnet34",  {  96,   256,   0.05f, 10}},
};
// clang-format on

// lenet alexnet vgg11 vgg13 vgg16 vgg19 resnet18 resnet34
const std::vector<std::string>& names();

// ValueError listing the names when `name` is unknown.
ModelDefaults defaults(const std::string& name);

// Built on the CPU (move it with Module::to), initialised as the notebook
// from gen (xavier_uniform_ weights, PyTorch-default biases). VGG's Dropout
// layers keep a reference to gen for their masks: gen must outlive the model.
// width_divisor divides VGG's channel counts (the course's small VGG uses 4);
// other models reject width_divisor != 1 with ValueError.
std::shared_ptr<Module> make(const std::string& name, Generator& gen, int width_divisor = 1);

// Throws ValueError unless the model accepts image_size x image_size
// one-channel input; the message lists the sizes that work, computed from the
// architecture (the flatten before the first Linear must match its width):
//   lenet 28-31, alexnet 195-226 (flatten 384*5*5), vgg* 224-255 (C*7*7),
//   resnet* >= 32 (global pooling takes any size; below 32 the last stages
//   would only see padding around a 1x1 map).
void check_input_size(const std::string& name, int image_size);

// The sizes in [1, max_size] that check_input_size accepts (for messages/tests).
std::vector<int> accepted_sizes(const std::string& name, int max_size = 512);

}  // namespace scratchnet::models
