// A model's layer table for `scratchnet summary`, computed from shapes alone
// (no tensors run, so it is instant even for VGG at 224 and needs no device):
// every Module knows its output_shape, and trace_shapes walks the leaves in
// the order forward runs them (Residual: conv1, bn1, conv2, bn2, conv3).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "layers/module.h"

namespace scratchnet {

struct LayerInfo {
  std::string name;         // dotted path, as in state_dict keys: "net.0", "1.0.conv1"
  std::string description;  // describe(): "Conv2d(1, 6, kernel_size=(5, 5), ...)"
  Shape output_shape;       // for the given input shape, batch included
  int64_t num_params = 0;   // the layer's own parameters (elements)
};

// One entry per leaf layer, in forward order. Throws ShapeError naming the
// layer when `input` (e.g. {1, 1, 28, 28}) does not fit the model.
std::vector<LayerInfo> summarize(Module& model, const Shape& input);

// Total elements over all parameters of a module (recursively).
int64_t count_parameters(const Module& module);

}  // namespace scratchnet
