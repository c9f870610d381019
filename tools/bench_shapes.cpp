// The model shape walker behind `scratchnet bench` (see bench_shapes.h).
#include "tools/bench_shapes.h"

#include <array>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"

namespace scratchnet::tools::bench {

namespace k = scratchnet::kernels;

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Conv:
      return "conv2d";
    case Kind::Linear:
      return "linear";
    case Kind::MaxPool:
      return "maxpool";
    case Kind::AvgPool:
      return "avgpool";
    case Kind::GlobalAvgPool:
      return "gap";
    case Kind::BatchNorm:
      return "bn";
    case Kind::ReLU:
      return "relu";
    case Kind::Sigmoid:
      return "sigmoid";
    case Kind::Add:
      return "add";
    case Kind::Dropout:
      return "dropout";
    case Kind::CrossEntropy:
      return "ce";
    case Kind::Sgd:
      return "sgd";
  }
  return "?";
}

std::string LayerShape::shape() const {
  std::ostringstream s;
  switch (kind) {
    case Kind::Conv:
      s << "N=" << conv.N << " C=" << conv.C << " H=" << conv.H << " W=" << conv.W
        << " K=" << conv.K << " R=" << conv.R << " S=" << conv.S << " s=" << conv.stride
        << " p=" << conv.pad;
      break;
    case Kind::Linear:
      s << "N=" << linear.N << " IN=" << linear.IN << " OUT=" << linear.OUT;
      break;
    case Kind::MaxPool:
    case Kind::AvgPool:
      s << "N=" << pool.N << " C=" << pool.C << " H=" << pool.H << " W=" << pool.W
        << " R=" << pool.R << " s=" << pool.stride << " p=" << pool.pad;
      break;
    case Kind::BatchNorm:
      s << "N=" << bn.N << " C=" << bn.C << " HW=" << bn.HW;
      break;
    case Kind::GlobalAvgPool:
      s << "planes=" << planes << " HW=" << hw;
      break;
    case Kind::CrossEntropy:
      s << "N=" << n << " classes=" << hw;
      break;
    default:
      s << "n=" << n;
  }
  return s.str();
}

std::string LayerShape::key() const {
  return std::string(kind_name(kind)) + " " + shape();
}

const std::vector<BenchModel>& bench_models() {
  // Input side and batch size as MODELS in shared/reference/torch_models.py.
  static const std::vector<BenchModel> models = {
      {"lenet", 28, 256},  {"alexnet", 224, 256}, {"vgg11", 224, 128},    {"vgg13", 224, 128},
      {"vgg16", 224, 128}, {"vgg19", 224, 128},   {"resnet18", 224, 256}, {"resnet34", 224, 256}};
  return models;
}

const BenchModel& bench_model(const std::string& name) {
  std::string names;
  for (const auto& m : bench_models()) {
    if (m.name == name) return m;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  throw ValueError("bench: no layer shape table for model '" + name + "'; the kernel mode knows " +
                   names + " (the model-step mode, --mode step, runs every model)");
}

namespace {

// Tracks the activation (N, C, H, W) through the network, appending a row per layer.
class Walker {
 public:
  Walker(std::string model, std::vector<LayerShape>& out, int N, int C, int H, int W)
      : model_(std::move(model)), out_(out), N(N), C(C), H(H), W(W) {}

  void conv(const std::string& name, int K, int R, int stride, int pad) {
    LayerShape l = base(name, Kind::Conv);
    l.conv = k::conv2d_params(N, C, H, W, K, R, R, stride, pad);
    C = K, H = l.conv.P, W = l.conv.Q;
    out_.push_back(l);
  }
  void pool(const std::string& name, Kind kind, int R, int stride, int pad = 0) {
    LayerShape l = base(name, kind);
    l.pool = k::pool2d_params(kind == Kind::MaxPool ? "max_pool2d" : "avg_pool2d", N, C, H, W, R, R,
                              stride, pad);
    H = l.pool.P, W = l.pool.Q;
    out_.push_back(l);
  }
  void bn(const std::string& name) {
    LayerShape l = base(name, Kind::BatchNorm);
    l.bn = k::batch_norm_params(N, C, H * W, 1e-5f, 0.1f);
    out_.push_back(l);
  }
  void pointwise(const std::string& name, Kind kind) {
    LayerShape l = base(name, kind);
    l.n = static_cast<int64_t>(N) * C * H * W;
    out_.push_back(l);
  }
  void gap(const std::string& name) {
    LayerShape l = base(name, Kind::GlobalAvgPool);
    l.planes = N * C, l.hw = H * W;
    H = W = 1;
    out_.push_back(l);
  }
  void linear(const std::string& name, int OUT) {
    LayerShape l = base(name, Kind::Linear);
    l.linear = k::linear_params(N, C * H * W, OUT);  // flattens (N, C, H, W)
    C = OUT, H = W = 1;
    out_.push_back(l);
  }
  // ResNet's Residual: conv1(stride)/bn1/relu, conv2/bn2, optional 1x1 conv3
  // on the block input, add, relu (the order the reference forward runs them).
  void residual(const std::string& p, int channels, bool use_1x1, int stride) {
    const int in_c = C, in_h = H, in_w = W;
    conv(p + ".conv1", channels, 3, stride, 1);
    bn(p + ".bn1");
    pointwise(p + "(relu)", Kind::ReLU);
    conv(p + ".conv2", channels, 3, 1, 1);
    bn(p + ".bn2");
    if (use_1x1) {
      Walker skip(model_, out_, N, in_c, in_h, in_w);
      skip.conv(p + ".conv3", channels, 1, stride, 0);
    }
    pointwise(p + "(add)", Kind::Add);
    pointwise(p + "(relu)", Kind::ReLU);
  }
  void loss_and_sgd() {
    LayerShape ce = base("loss", Kind::CrossEntropy);
    ce.n = N, ce.hw = C;
    out_.push_back(ce);
    LayerShape sgd = base("sgd", Kind::Sgd);
    sgd.n = parameter_count(out_);
    out_.push_back(sgd);
  }

 private:
  LayerShape base(const std::string& name, Kind kind) const {
    LayerShape l;
    l.model = model_, l.layer = name, l.kind = kind;
    return l;
  }
  std::string model_;
  std::vector<LayerShape>& out_;
  int N, C, H, W;
};

void lenet(Walker& w) {
  w.conv("net.0", 6, 5, 1, 2);
  w.pointwise("net.1", Kind::Sigmoid);
  w.pool("net.2", Kind::AvgPool, 2, 2);
  w.conv("net.3", 16, 5, 1, 0);
  w.pointwise("net.4", Kind::Sigmoid);
  w.pool("net.5", Kind::AvgPool, 2, 2);
  w.linear("net.7", 120);
  w.pointwise("net.8", Kind::Sigmoid);
  w.linear("net.9", 84);
  w.pointwise("net.10", Kind::Sigmoid);
  w.linear("net.11", 10);
}

void alexnet(Walker& w) {
  w.conv("conv1", 96, 11, 4, 0);
  w.pointwise("rl1", Kind::ReLU);
  w.pool("max1", Kind::MaxPool, 3, 2);
  w.conv("conv2", 256, 5, 1, 2);
  w.pointwise("rl2", Kind::ReLU);
  w.pool("max2", Kind::MaxPool, 3, 2);
  w.conv("conv3", 384, 3, 1, 1);
  w.pointwise("rl3", Kind::ReLU);
  w.conv("conv4", 384, 3, 1, 1);
  w.pointwise("rl4", Kind::ReLU);
  w.conv("conv5", 384, 3, 1, 1);
  w.pointwise("rl5", Kind::ReLU);
  w.pool("max3", Kind::MaxPool, 3, 2);
  w.linear("linear1", 4096);
  w.pointwise("rl6", Kind::ReLU);
  w.linear("linear2", 4096);
  w.pointwise("rl7", Kind::ReLU);
  w.linear("linear3", 10);
}

// (number of 3x3 convs, output channels) per block, as the reference's
// conv_arch for VGG-11/13/16/19; width_divisor divides the channels.
void vgg(Walker& w, int depth, int width_divisor) {
  static const std::map<int, std::vector<std::pair<int, int>>> archs = {
      {11, {{1, 64}, {1, 128}, {2, 256}, {2, 512}, {2, 512}}},
      {13, {{2, 64}, {2, 128}, {2, 256}, {2, 512}, {2, 512}}},
      {16, {{2, 64}, {2, 128}, {3, 256}, {3, 512}, {3, 512}}},
      {19, {{2, 64}, {2, 128}, {4, 256}, {4, 512}, {4, 512}}}};
  const auto& arch = archs.at(depth);
  for (std::size_t b = 0; b < arch.size(); ++b) {
    const std::string p = "vgg_block" + std::to_string(b);
    for (int i = 0; i < arch[b].first; ++i) {
      w.conv(p + ".conv" + std::to_string(i), arch[b].second / width_divisor, 3, 1, 1);
      w.pointwise(p + ".relu" + std::to_string(i), Kind::ReLU);
    }
    w.pool(p + ".max_pool", Kind::MaxPool, 2, 2);
  }
  w.linear("last.1", 4096);
  w.pointwise("last.2", Kind::ReLU);
  w.pointwise("last.3", Kind::Dropout);
  w.linear("last.4", 4096);
  w.pointwise("last.5", Kind::ReLU);
  w.pointwise("last.6", Kind::Dropout);
  w.linear("last.7", 10);
}

// Residual blocks per stage: ResNet-18 {2, 2, 2, 2}, ResNet-34 {3, 4, 6, 3}.
void resnet(Walker& w, const std::array<int, 4>& blocks) {
  w.conv("0.0", 64, 7, 2, 3);
  w.bn("0.1");
  w.pointwise("0.2", Kind::ReLU);
  w.pool("0.3", Kind::MaxPool, 3, 2, 1);
  const int channels[4] = {64, 128, 256, 512};
  for (int b = 0; b < 4; ++b) {
    for (int i = 0; i < blocks[b]; ++i) {
      const bool down = i == 0 && b > 0;
      w.residual(std::to_string(b + 1) + "." + std::to_string(i), channels[b], down, down ? 2 : 1);
    }
  }
  w.gap("5");
  w.linear("7", 10);
}

}  // namespace

std::vector<LayerShape> model_layers(const std::string& model, int batch, int image_size,
                                     int width_divisor) {
  const BenchModel& m = bench_model(model);
  if (width_divisor != 1 && model.rfind("vgg", 0) != 0)
    throw ValueError("bench: --width-divisor applies to the VGG models only, not to " + model);
  if (width_divisor < 1 || 64 / width_divisor < 1)
    throw ValueError("bench: --width-divisor must be in 1..64, got " +
                     std::to_string(width_divisor));
  if (batch < 0 || image_size < 0)
    throw ValueError("bench: batch size and image size must be positive, got " +
                     std::to_string(batch) + " and " + std::to_string(image_size));
  const int N = batch ? batch : m.batch_size;
  const int hw = image_size ? image_size : m.image_size;
  std::vector<LayerShape> out;
  Walker w(model, out, N, 1, hw, hw);
  if (model == "lenet") lenet(w);
  if (model == "alexnet") alexnet(w);
  if (model == "vgg11") vgg(w, 11, width_divisor);
  if (model == "vgg13") vgg(w, 13, width_divisor);
  if (model == "vgg16") vgg(w, 16, width_divisor);
  if (model == "vgg19") vgg(w, 19, width_divisor);
  if (model == "resnet18") resnet(w, {2, 2, 2, 2});
  if (model == "resnet34") resnet(w, {3, 4, 6, 3});
  w.loss_and_sgd();
  return out;
}

std::vector<LayerShape> dedup(const std::vector<LayerShape>& layers) {
  std::vector<LayerShape> out;
  std::map<std::string, std::size_t> seen;
  for (const auto& l : layers) {
    auto it = seen.find(l.key());
    if (it != seen.end()) {
      out[it->second].count += l.count;
    } else {
      seen.emplace(l.key(), out.size());
      out.push_back(l);
    }
  }
  return out;
}

int64_t parameter_count(const std::vector<LayerShape>& layers) {
  int64_t n = 0;
  for (const auto& l : layers) {
    if (l.kind == Kind::Conv)
      n += static_cast<int64_t>(l.conv.K) * l.conv.C * l.conv.R * l.conv.S + l.conv.K;
    if (l.kind == Kind::Linear)
      n += static_cast<int64_t>(l.linear.OUT) * l.linear.IN + l.linear.OUT;
    if (l.kind == Kind::BatchNorm) n += 2 * static_cast<int64_t>(l.bn.C);
  }
  return n;
}

}  // namespace scratchnet::tools::bench
