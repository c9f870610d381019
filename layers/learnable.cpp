// The layers with state: Conv2d, Linear, BatchNorm, and their initialisation.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kernels/conv2d.h"
#include "layers/layers.h"
#include "layers/shape_util.h"

namespace scratchnet {

void init_uniform(Tensor& t, float lo, float hi, Generator& gen) {
  if (t.dtype() != DType::F32)
    throw ValueError("init_uniform: expected a float32 tensor, got " + t.str());
  const std::vector<float> v = gen.uniform(t.numel(), lo, hi);
  float* p = t.host<float>();
  std::copy(v.begin(), v.end(), p);
}

namespace {

// xavier_uniform_ (gain 1) on the weight, PyTorch's default on the bias.
void init_weight_and_bias(Tensor& weight, Tensor& bias, int64_t fan_in, int64_t fan_out,
                          Generator& gen) {
  const float a = static_cast<float>(std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)));
  init_uniform(weight, -a, a, gen);
  if (bias.defined()) {
    const float b = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
    init_uniform(bias, -b, b, gen);
  }
}

void require_positive(const char* layer, const char* what, int v) {
  if (v <= 0)
    throw ValueError(std::string(layer) + ": " + what + " must be >= 1, got " + std::to_string(v));
}

}  // namespace

// --- Conv2d ----------------------------------------------------------------------

Conv2d::Conv2d(Generator& gen, int in_channels, int out_channels, int kernel_size, int stride,
               int padding, bool bias)
    : in_(in_channels), out_(out_channels), kernel_(kernel_size), stride_(stride), pad_(padding) {
  require_positive("Conv2d", "in_channels", in_channels);
  require_positive("Conv2d", "out_channels", out_channels);
  require_positive("Conv2d", "kernel_size", kernel_size);
  require_positive("Conv2d", "stride", stride);
  if (padding < 0) throw ValueError("Conv2d: padding must be >= 0, got " + std::to_string(padding));
  Tensor w = Tensor::empty({out_, in_, kernel_, kernel_});
  Tensor b = bias ? Tensor::empty({out_}) : Tensor();
  const int64_t area = static_cast<int64_t>(kernel_) * kernel_;
  init_weight_and_bias(w, b, in_ * area, out_ * area, gen);
  weight_ = register_parameter("weight", w);
  if (bias) bias_ = register_parameter("bias", b);
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight_, bias_, stride_, pad_);
}

Tensor Conv2d::forward_relu(const Tensor& x) {
  return conv2d_relu(x, weight_, bias_, stride_, pad_);
}

std::string Conv2d::describe() const {
  std::string s = "Conv2d(" + std::to_string(in_) + ", " + std::to_string(out_) +
                  ", kernel_size=" + pair_str(kernel_) + ", stride=" + pair_str(stride_);
  if (pad_ != 0) s += ", padding=" + pair_str(pad_);  // PyTorch omits the default
  if (!bias_.defined()) s += ", bias=False";
  return s + ")";
}

Shape Conv2d::output_shape(const Shape& in) const {
  if (in.size() != 4 || in[1] != in_)
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(in_) + ", H, W), got " +
                     shape_str(in));
  const auto p =
      kernels::conv2d_params(dim_int("conv2d", in[0]), in_, dim_int("conv2d", in[2]),
                             dim_int("conv2d", in[3]), out_, kernel_, kernel_, stride_, pad_);
  return {in[0], out_, p.P, p.Q};
}

// --- Linear ----------------------------------------------------------------------

Linear::Linear(Generator& gen, int in_features, int out_features, bool bias)
    : in_(in_features), out_(out_features) {
  require_positive("Linear", "in_features", in_features);
  require_positive("Linear", "out_features", out_features);
  Tensor w = Tensor::empty({out_, in_});
  Tensor b = bias ? Tensor::empty({out_}) : Tensor();
  init_weight_and_bias(w, b, in_, out_, gen);
  weight_ = register_parameter("weight", w);
  if (bias) bias_ = register_parameter("bias", b);
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight_, bias_);
}

Tensor Linear::forward_relu(const Tensor& x) {
  return linear_relu(x, weight_, bias_);
}

std::string Linear::describe() const {
  return "Linear(in_features=" + std::to_string(in_) + ", out_features=" + std::to_string(out_) +
         ", bias=" + (bias_.defined() ? "True" : "False") + ")";
}

Shape Linear::output_shape(const Shape& in) const {
  if (in.size() != 2 || in[1] != in_)
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(in_) + "), got " +
                     shape_str(in));
  return {in[0], out_};
}

// --- BatchNorm -------------------------------------------------------------------

BatchNorm::BatchNorm(int num_features, bool spatial, float eps, float momentum)
    : features_(num_features), spatial_(spatial), eps_(eps), momentum_(momentum) {
  const char* name = spatial ? "BatchNorm2d" : "BatchNorm1d";
  require_positive(name, "num_features", num_features);
  if (!(eps > 0.0f))
    throw ValueError(std::string(name) + ": eps must be > 0, got " + py_float(eps));
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    throw ValueError(std::string(name) + ": momentum must be in [0, 1], got " + py_float(momentum));
  weight_ = register_parameter("weight", Tensor::full({features_}, 1.0f));
  bias_ = register_parameter("bias", Tensor::zeros({features_}));
  running_mean_ = register_buffer("running_mean", Tensor::zeros({features_}));
  running_var_ = register_buffer("running_var", Tensor::full({features_}, 1.0f));
  num_batches_tracked_ =
      register_buffer("num_batches_tracked", Tensor::zeros(Shape{}, Device::cpu(), DType::I64));
}

Tensor BatchNorm::run(const Tensor& x, bool relu) {
  if (x.ndim() != (spatial_ ? 4 : 2))
    throw ShapeError(describe() + ": expected input " + (spatial_ ? "(N, C, H, W)" : "(N, C)") +
                     ", got " + x.str());
  Tensor y;
  if (is_training() && sync_) {  // no fused variant: the ReLU runs on its own
    y = batch_norm_synced(x, weight_, bias_, running_mean_, running_var_, sync_, momentum_, eps_);
    if (relu) y = scratchnet::relu(y);
  } else {
    y = (relu ? batch_norm_relu : batch_norm)(x, weight_, bias_, running_mean_, running_var_,
                                              is_training(), momentum_, eps_);
  }
  // Counted after the op succeeded, as PyTorch counts (training forwards only).
  if (is_training()) num_batches_tracked_.host<int64_t>()[0] += 1;
  return y;
}

int sync_batch_norm(Module& model, const SumOverRanks& sum) {
  int n = 0;
  if (auto* bn = dynamic_cast<BatchNorm*>(&model)) {
    bn->set_sync(sum);
    ++n;
  }
  for (const auto& child : model.children()) n += sync_batch_norm(*child.second, sum);
  return n;
}

int64_t BatchNorm::num_batches_tracked() const {
  return num_batches_tracked_.host<int64_t>()[0];
}

std::string BatchNorm::describe() const {
  return std::string(spatial_ ? "BatchNorm2d(" : "BatchNorm1d(") + std::to_string(features_) +
         ", eps=" + py_float(eps_) + ", momentum=" + py_float(momentum_) +
         ", affine=True, track_running_stats=True)";
}

Shape BatchNorm::output_shape(const Shape& in) const {
  if (in.size() != (spatial_ ? 4u : 2u) || in[1] != features_)
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(features_) +
                     (spatial_ ? ", H, W)" : ")") + ", got " + shape_str(in));
  return in;
}

}  // namespace scratchnet
