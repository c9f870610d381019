// The leaf layers: each owns its parameters and buffers under PyTorch's
// names ("weight", "bias", "running_mean", ...), calls one op of core/ops.h,
// prints itself as PyTorch's repr, and computes its output shape without
// running tensors. Learnable layers are initialised at construction from the
// model's Generator, as the course notebook does:
//   Conv2d / Linear weight: xavier_uniform_, U(-a, a), a = sqrt(6 / (fan_in + fan_out)),
//     fan_in = C*R*S (in), fan_out = K*R*S (out);
//   bias: PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in));
//   BatchNorm: gamma 1, beta 0, running mean 0, running var 1.
// Containers (Sequential, Residual) live in sequential.h and residual.h.
#pragma once
#include <string>

#include "core/rng.h"
#include "layers/module.h"

namespace scratchnet {

// Fills t (F32, on the host) with U(lo, hi) drawn from one stream of gen.
void init_uniform(Tensor& t, float lo, float hi, Generator& gen);

// x (N, C, H, W) -> (N, K, P, Q); weight (K, C, R, S), bias (K).
class Conv2d : public Module {
 public:
  Conv2d(Generator& gen, int in_channels, int out_channels, int kernel_size, int stride = 1,
         int padding = 0, bool bias = true);
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) as one op (the fusion pass's Conv2d + ReLU).
  Tensor forward_relu(const Tensor& x);
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined when built without bias

 private:
  int in_, out_, kernel_, stride_, pad_;
  Tensor weight_, bias_;
};

// x (N, IN) -> (N, OUT); weight (OUT, IN), bias (OUT).
class Linear : public Module {
 public:
  Linear(Generator& gen, int in_features, int out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  // forward followed by a ReLU, as one op (linear_relu): the fusion pass's.
  Tensor forward_relu(const Tensor& x);
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  int in_, out_;
  Tensor weight_, bias_;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string describe() const override { return "ReLU()"; }
  Shape output_shape(const Shape& in) const override { return in; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string describe() const override { return "Sigmoid()"; }
  Shape output_shape(const Shape& in) const override { return in; }
};

// (N, C, H, W) -> (N, C, P, Q), ceil_mode=False. stride 0 means = kernel (PyTorch's default).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int kernel_size, int stride = 0, int padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override;

 private:
  int kernel_, stride_, pad_;
};

// As MaxPool2d; averages count the padding (count_include_pad=True).
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int kernel_size, int stride = 0, int padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override;

 private:
  int kernel_, stride_, pad_;
};

// (N, C, H, W) -> (N, C, 1, 1). Only output size (1, 1) is implemented (all
// the models need); any other throws ValueError at construction.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(int output_h = 1, int output_w = 1);
  Tensor forward(const Tensor& x) override { return global_avg_pool(x); }
  std::string describe() const override { return "AdaptiveAvgPool2d(output_size=(1, 1))"; }
  Shape output_shape(const Shape& in) const override;
};

// BatchNorm2d (x (N, C, H, W)) or BatchNorm1d (x (N, C)), PyTorch's
// semantics and state: weight (gamma), bias (beta), running_mean,
// running_var (F32, follow the module's device) and num_batches_tracked (I64
// scalar, shape (), always on the host), which every training forward
// increments. momentum and eps as PyTorch's defaults.
class BatchNorm : public Module {
 public:
  // spatial: BatchNorm2d over (N, C, H, W); otherwise BatchNorm1d over (N, C).
  BatchNorm(int num_features, bool spatial, float eps = 1e-5f, float momentum = 0.1f);
  Tensor forward(const Tensor& x) override { return run(x, false); }
  // relu(forward(x)) as one op (batch_norm_relu): what a container calls
  // when a ReLU follows this layer and fusion is on (Module::set_fusion).
  Tensor forward_relu(const Tensor& x) { return run(x, true); }
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }
  int64_t num_batches_tracked() const;

  // Training forwards take their statistics over every data-parallel rank
  // through `sum` (batch_norm_synced); an empty function: this rank's batch
  // only (the default).
  void set_sync(SumOverRanks sum) { sync_ = std::move(sum); }

 private:
  Tensor run(const Tensor& x, bool relu);

  SumOverRanks sync_;
  int features_;
  bool spatial_;
  float eps_, momentum_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};

// Makes every BatchNorm in `model` synchronised through `sum` (see
// BatchNorm::set_sync); returns how many there are.
int sync_batch_norm(Module& model, const SumOverRanks& sum);

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int num_features) : BatchNorm(num_features, true) {}
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int num_features) : BatchNorm(num_features, false) {}
};

// Inverted dropout in training, identity in eval. Draws its masks from the
// generator it was given (the model's RNG, so that a checkpoint's RNG state
// reproduces them); that generator must outlive this module.
class Dropout : public Module {
 public:
  Dropout(float p, Generator& gen);
  Tensor forward(const Tensor& x) override { return dropout(x, p_, is_training(), *gen_); }
  std::string describe() const override;
  Shape output_shape(const Shape& in) const override { return in; }
  float p() const { return p_; }

 private:
  float p_;
  Generator* gen_;
};

// (N, d1, d2, ...) -> (N, d1*d2*...), as nn.Flatten() (start_dim=1).
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Flatten(start_dim=1, end_dim=-1)"; }
  Shape output_shape(const Shape& in) const override;
};

}  // namespace scratchnet
