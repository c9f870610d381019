// The four architectures, line for line as ../shared/reference/torch_models.py
// (same children, names and registration order, hence the same state_dict).
// Each builder sits next to its SpatialPlan; tests check that the plan
// accepts exactly the sizes the built model's output_shape accepts.
#include "models/architectures.h"

#include "core/error.h"
#include "layers/all.h"

namespace scratchnet::models::detail {

namespace {
template <typename M, typename... Args>
std::shared_ptr<M> mk(Args&&... args) {
  return std::make_shared<M>(std::forward<Args>(args)...);
}
constexpr int kClasses = 10;
}  // namespace

// --- LeNet: sigmoid, average pooling, 28x28 ----------------------------------------------

std::shared_ptr<Module> make_lenet(Generator& gen) {
  auto model = mk<Chain>("LeNet");
  auto net = model->add("net", mk<Sequential>());
  net->add(mk<Conv2d>(gen, 1, 6, 5, 1, 2));
  net->add(mk<Sigmoid>());
  net->add(mk<AvgPool2d>(2, 2));
  net->add(mk<Conv2d>(gen, 6, 16, 5));
  net->add(mk<Sigmoid>());
  net->add(mk<AvgPool2d>(2, 2));
  net->add(mk<Flatten>());
  net->add(mk<Linear>(gen, 16 * 5 * 5, 120));
  net->add(mk<Sigmoid>());
  net->add(mk<Linear>(gen, 120, 84));
  net->add(mk<Sigmoid>());
  net->add(mk<Linear>(gen, 84, kClasses));
  return model;
}

SpatialPlan lenet_plan() {
  return {{{5, 1, 2}, {2, 2, 0}, {5, 1, 0}, {2, 2, 0}}, 5};
}

// --- AlexNet: the notebook's (conv5 has 384 channels: flatten 384*5*5 = 9600) ---------------

std::shared_ptr<Module> make_alexnet(Generator& gen) {
  auto m = mk<Chain>("AlexNet");
  m->add("conv1", mk<Conv2d>(gen, 1, 96, 11, 4));
  m->add("rl1", mk<ReLU>());
  m->add("max1", mk<MaxPool2d>(3, 2));
  m->add("conv2", mk<Conv2d>(gen, 96, 256, 5, 1, 2));
  m->add("rl2", mk<ReLU>());
  m->add("max2", mk<MaxPool2d>(3, 2));
  m->add("conv3", mk<Conv2d>(gen, 256, 384, 3, 1, 1));
  m->add("rl3", mk<ReLU>());
  m->add("conv4", mk<Conv2d>(gen, 384, 384, 3, 1, 1));
  m->add("rl4", mk<ReLU>());
  m->add("conv5", mk<Conv2d>(gen, 384, 384, 3, 1, 1));
  m->add("rl5", mk<ReLU>());
  m->add("max3", mk<MaxPool2d>(3, 2));
  m->add("fl", mk<Flatten>());
  m->add("linear1", mk<Linear>(gen, 9600, 4096));
  m->add("rl6", mk<ReLU>());
  m->add("linear2", mk<Linear>(gen, 4096, 4096));
  m->add("rl7", mk<ReLU>());
  m->add("linear3", mk<Linear>(gen, 4096, kClasses));
  return m;
}

SpatialPlan alexnet_plan() {
  return {{{11, 4, 0}, {3, 2, 0}, {5, 1, 2}, {3, 2, 0}, {3, 1, 1}, {3, 1, 1}, {3, 1, 1}, {3, 2, 0}},
          5};
}

// --- VGG: blocks of 3x3 convs + 2x2 max pool, then 3 FC with dropout ----------------------

const VggArch& vgg_arch(int depth) {
  static const VggArch vgg11{{1, 64}, {1, 128}, {2, 256}, {2, 512}, {2, 512}};
  static const VggArch vgg13{{2, 64}, {2, 128}, {2, 256}, {2, 512}, {2, 512}};
  static const VggArch vgg16{{2, 64}, {2, 128}, {3, 256}, {3, 512}, {3, 512}};
  static const VggArch vgg19{{2, 64}, {2, 128}, {4, 256}, {4, 512}, {4, 512}};
  switch (depth) {
    case 11:
      return vgg11;
    case 13:
      return vgg13;
    case 16:
      return vgg16;
    case 19:
      return vgg19;
    default:
      throw ValueError("vgg: depth must be 11, 13, 16 or 19, got " + std::to_string(depth));
  }
}

std::shared_ptr<Module> make_vgg(const VggArch& arch, Generator& gen, int width_divisor) {
  auto m = mk<Chain>("VGG");
  int in_channels = 1, out_channels = 0;
  for (std::size_t i = 0; i < arch.size(); ++i) {
    const int num_convs = arch[i].first;
    out_channels = arch[i].second / width_divisor;  // the reference's c // ratio
    if (out_channels < 1)
      throw ValueError("vgg: width divisor " + std::to_string(width_divisor) + " leaves block " +
                       std::to_string(i) + " with no channels (it has " +
                       std::to_string(arch[i].second) + ")");
    auto block = m->add("vgg_block" + std::to_string(i), mk<Chain>("VGG_block"));
    for (int j = 0; j < num_convs; ++j) {
      block->add("conv" + std::to_string(j), mk<Conv2d>(gen, in_channels, out_channels, 3, 1, 1));
      block->add("relu" + std::to_string(j), mk<ReLU>());
      in_channels = out_channels;
    }
    block->add("max_pool", mk<MaxPool2d>(2, 2));
  }
  auto last = m->add("last", mk<Sequential>());
  last->add(mk<Flatten>());
  last->add(mk<Linear>(gen, out_channels * 7 * 7, 4096));
  last->add(mk<ReLU>());
  last->add(mk<Dropout>(0.5f, gen));
  last->add(mk<Linear>(gen, 4096, 4096));
  last->add(mk<ReLU>());
  last->add(mk<Dropout>(0.5f, gen));
  last->add(mk<Linear>(gen, 4096, kClasses));
  return m;
}

SpatialPlan vgg_plan(const VggArch& arch) {
  SpatialPlan plan{{}, 7};
  for (const auto& [num_convs, channels] : arch) {
    for (int j = 0; j < num_convs; ++j) plan.windows.push_back({3, 1, 1});
    plan.windows.push_back({2, 2, 0});
  }
  return plan;
}

// --- ResNet: stem, four macro-blocks of Residuals, global pool, FC ------------------------

namespace {
std::shared_ptr<Sequential> macro_block(Generator& gen, int input_channels, int num_channels,
                                        int num_residuals, bool first_block) {
  auto blk = mk<Sequential>();
  for (int i = 0; i < num_residuals; ++i) {
    if (i == 0 && !first_block)
      blk->add(mk<Residual>(gen, input_channels, num_channels, true, 2));
    else
      blk->add(mk<Residual>(gen, num_channels, num_channels));
  }
  return blk;
}
}  // namespace

std::shared_ptr<Module> make_resnet(const std::array<int, 4>& blocks, Generator& gen) {
  auto net = mk<Sequential>();
  auto b1 = net->add(mk<Sequential>());
  b1->add(mk<Conv2d>(gen, 1, 64, 7, 2, 3));
  b1->add(mk<BatchNorm2d>(64));
  b1->add(mk<ReLU>());
  b1->add(mk<MaxPool2d>(3, 2, 1));
  net->add(macro_block(gen, 64, 64, blocks[0], true));
  net->add(macro_block(gen, 64, 128, blocks[1], false));
  net->add(macro_block(gen, 128, 256, blocks[2], false));
  net->add(macro_block(gen, 256, 512, blocks[3], false));
  net->add(mk<AdaptiveAvgPool2d>(1, 1));
  net->add(mk<Flatten>());
  net->add(mk<Linear>(gen, 512, kClasses));
  return net;
}

}  // namespace scratchnet::models::detail
