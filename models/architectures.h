// Internal to models/: the builders behind models::make, and the spatial
// walk behind check_input_size.
#pragma once
#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"

namespace scratchnet::models::detail {

// (number of 3x3 convs, output channels) per VGG block, as the reference.
using VggArch = std::vector<std::pair<int, int>>;
const VggArch& vgg_arch(int depth);  // 11, 13, 16 or 19

std::shared_ptr<Module> make_lenet(Generator& gen);
std::shared_ptr<Module> make_alexnet(Generator& gen);
std::shared_ptr<Module> make_vgg(const VggArch& arch, Generator& gen, int width_divisor);
std::shared_ptr<Module> make_resnet(const std::array<int, 4>& blocks, Generator& gen);

// A conv or pool window along one spatial axis.
struct Window {
  int kernel, stride, pad;
};
// The windows of lenet / alexnet / vgg* in forward order (only what changes
// the spatial size), and the side the flatten must see.
struct SpatialPlan {
  std::vector<Window> windows;
  int flatten_side;
};
SpatialPlan lenet_plan();
SpatialPlan alexnet_plan();
SpatialPlan vgg_plan(const VggArch& arch);

}  // namespace scratchnet::models::detail
