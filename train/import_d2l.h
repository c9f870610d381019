// Weights saved from d2l-style models: the book builds its networks as
// nn.Sequential, so their state_dict keys are positions ("0.weight",
// "3.1.weight", or "net.0.weight" for d2l 1.0's classes) where ours are the
// course notebook's names ("conv1.weight", "vgg_block0.conv0.weight",
// "last.1.weight"). The same architecture has the same parameters in the same
// order, so such a checkpoint is mapped onto ours by position, each pair
// checked for dtype and shape.
//
// Position needs an order, and a safetensors file does not keep the
// state_dict's (writers sort by name): the order is rebuilt from the key
// paths, numbers compared as numbers, then weight, bias, running_mean,
// running_var, num_batches_tracked within a layer. So only keys whose module
// path is all numbers (after one common leading name such as "net." or
// "module.") are mapped; anything else is left to the strict by-name load.
#pragma once
#include <string>

#include "layers/module.h"
#include "train/safetensors.h"

namespace scratchnet::safetensors {

// Returns `file` unchanged when its keys are the module's own, or are not
// Sequential-style. Otherwise renames its tensors to the module's keys by
// position when every pair has the same dtype and shape; when they do not
// fit, throws IoError listing every position that differs (checkpoint key and
// shape against the model's) and the counts, nothing left out.
File adopt_sequential_keys(const Module& module, File file, const std::string& path_for_messages);

}  // namespace scratchnet::safetensors
