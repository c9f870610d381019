// Argument checks, device dispatch and autograd nodes of every op. The math
// lives in kernels/; this file only wires it. Backward closures capture
// detached tensors (never the op's own output with its history), so no
// reference cycle keeps a graph alive.
#include "core/ops.h"

#include <cmath>

#include "core/cuda.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gather.h"
#include "kernels/linear.h"
#include "kernels/pool2d.h"
#include "kernels/resize.h"
#include "kernels/softmax_ce.h"

namespace k = scratchnet::kernels;

namespace scratchnet {

namespace {

// SN_GPU(call): the CUDA branch of a dispatch. In a build without CUDA a CUDA
// tensor cannot exist, but say so clearly rather than compile nothing.
#ifdef SCRATCHNET_WITH_CUDA
#define SN_GPU(...) __VA_ARGS__
#else
#define SN_GPU(...) throw DeviceError(std::string(op) + ": built without CUDA")
#endif

[[maybe_unused]] k::Stream stream() {
#ifdef SCRATCHNET_WITH_CUDA
  return cuda::stream();
#else
  return nullptr;
#endif
}

void check_dtype(const char* op, const char* what, const Tensor& t, DType want) {
  if (!t.defined()) throw ShapeError(std::string(op) + ": " + what + " is undefined");
  if (t.dtype() != want)
    throw ShapeError(std::string(op) + ": " + what + " must be " + dtype_name(want) + ", got " +
                     t.str());
}

void check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
    } else if (t->device() != first->device()) {
      throw DeviceError(std::string(op) + ": tensors on different devices (" +
                        first->device().str() + " and " + t->device().str() +
                        "); move them with .to() first");
    }
  }
}

int as_int(const char* op, const char* what, int64_t v) {
  if (v > INT32_MAX)
    throw ShapeError(std::string(op) + ": " + what + " " + std::to_string(v) + " is too large");
  return static_cast<int>(v);
}

[[maybe_unused]] Tensor workspace(std::size_t bytes, Device d) {
  return Tensor::empty({static_cast<int64_t>(bytes)}, d, DType::U8);
}

// A gradient buffer for an input that needs none but whose kernel writes it
// together with one that does (conv weight/bias): scratch, thrown away.
Tensor or_scratch(const Tensor& g, const Tensor& like) {
  return g.defined() ? g : Tensor::zeros(like.shape(), like.device());
}

float* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

}  // namespace

// --- conv2d -------------------------------------------------------------------

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad) {
  [[maybe_unused]] const char* op = "conv2d";
  check_dtype(op, "input", x, DType::F32);
  check_dtype(op, "weight", w, DType::F32);
  check_shape(x.ndim() == 4, op, "input of shape (N, C, H, W)", x);
  check_shape(w.ndim() == 4 && w.size(1) == x.size(1), op,
              "weight of shape (K, " + std::to_string(x.size(1)) + ", R, S)", w);
  if (b.defined()) {
    check_dtype(op, "bias", b, DType::F32);
    check_shape(b.ndim() == 1 && b.size(0) == w.size(0), op,
                "bias of shape (" + std::to_string(w.size(0)) + ",)", b);
  }
  check_same_device(op, {&x, &w, &b});
  const auto p = k::conv2d_params(as_int(op, "N", x.size(0)), as_int(op, "C", x.size(1)),
                                  as_int(op, "H", x.size(2)), as_int(op, "W", x.size(3)),
                                  as_int(op, "K", w.size(0)), as_int(op, "R", w.size(2)),
                                  as_int(op, "S", w.size(3)), stride, pad);
  const Device d = x.device();
  Tensor y = Tensor::empty({p.N, p.K, p.P, p.Q}, d);
  if (d.is_cuda()) {
    SN_GPU(Tensor ws = workspace(k::conv2d_workspace_bytes_cuda(p), d);
           k::conv2d_forward_cuda(p, x.data<float>(), w.data<float>(), ptr_or_null(b),
                                  y.data<float>(), ws.data<uint8_t>(), stream()));
  } else {
    k::conv2d_forward_cpu(p, x.data<float>(), w.data<float>(), ptr_or_null(b), y.data<float>());
  }
  if (needs_grad({&x, &w, &b})) {
    record(y, op, {x, w, b},
           [p, xs = x.detach(), ws_ = w.detach(), has_bias = b.defined()](
               const Tensor& gy, const std::vector<Tensor>& g) {
             [[maybe_unused]] const char* op = "conv2d backward";
             const Device d = gy.device();
             if (g[0].defined()) {
               if (d.is_cuda()) {
                 SN_GPU(Tensor ws = workspace(k::conv2d_workspace_bytes_cuda(p), d);
                        k::conv2d_backward_data_cuda(p, gy.data<float>(), ws_.data<float>(),
                                                     g[0].data<float>(), ws.data<uint8_t>(),
                                                     stream()));
               } else {
                 k::conv2d_backward_data_cpu(p, gy.data<float>(), ws_.data<float>(),
                                             g[0].data<float>());
               }
             }
             if (g[1].defined() || (has_bias && g[2].defined())) {
               Tensor dw = or_scratch(g[1], ws_);
               float* db = has_bias ? ptr_or_null(g[2]) : nullptr;
               if (d.is_cuda()) {
                 SN_GPU(Tensor ws = workspace(k::conv2d_workspace_bytes_cuda(p), d);
                        k::conv2d_backward_weight_cuda(p, xs.data<float>(), gy.data<float>(),
                                                       dw.data<float>(), db, ws.data<uint8_t>(),
                                                       stream()));
               } else {
                 k::conv2d_backward_weight_cpu(p, xs.data<float>(), gy.data<float>(),
                                               dw.data<float>(), db);
               }
             }
           });
  }
  return y;
}

// --- linear -------------------------------------------------------------------

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  [[maybe_unused]] const char* op = "linear";
  check_dtype(op, "input", x, DType::F32);
  check_dtype(op, "weight", w, DType::F32);
  check_shape(x.ndim() == 2, op, "input of shape (N, in_features)", x);
  check_shape(w.ndim() == 2 && w.size(1) == x.size(1), op,
              "weight of shape (out_features, " + std::to_string(x.size(1)) + ")", w);
  if (b.defined()) {
    check_dtype(op, "bias", b, DType::F32);
    check_shape(b.ndim() == 1 && b.size(0) == w.size(0), op,
                "bias of shape (" + std::to_string(w.size(0)) + ",)", b);
  }
  check_same_device(op, {&x, &w, &b});
  const auto p = k::linear_params(as_int(op, "N", x.size(0)), as_int(op, "in", x.size(1)),
                                  as_int(op, "out", w.size(0)));
  const Device d = x.device();
  Tensor y = Tensor::empty({p.N, p.OUT}, d);
  if (d.is_cuda()) {
    SN_GPU(k::linear_forward_cuda(p, x.data<float>(), w.data<float>(), ptr_or_null(b),
                                  y.data<float>(), stream()));
  } else {
    k::linear_forward_cpu(p, x.data<float>(), w.data<float>(), ptr_or_null(b), y.data<float>());
  }
  if (needs_grad({&x, &w, &b})) {
    record(y, op, {x, w, b},
           [p, xs = x.detach(), ws = w.detach(), has_bias = b.defined()](
               const Tensor& gy, const std::vector<Tensor>& g) {
             [[maybe_unused]] const char* op = "linear backward";
             const bool gpu = gy.is_cuda();
             if (g[0].defined()) {
               if (gpu) {
                 SN_GPU(k::linear_backward_data_cuda(p, gy.data<float>(), ws.data<float>(),
                                                     g[0].data<float>(), stream()));
               } else {
                 k::linear_backward_data_cpu(p, gy.data<float>(), ws.data<float>(),
                                             g[0].data<float>());
               }
             }
             if (g[1].defined() || (has_bias && g[2].defined())) {
               Tensor dw = or_scratch(g[1], ws);
               float* db = has_bias ? ptr_or_null(g[2]) : nullptr;
               if (gpu) {
                 SN_GPU(k::linear_backward_weight_cuda(p, xs.data<float>(), gy.data<float>(),
                                                       dw.data<float>(), db, stream()));
               } else {
                 k::linear_backward_weight_cpu(p, xs.data<float>(), gy.data<float>(),
                                               dw.data<float>(), db);
               }
             }
           });
  }
  return y;
}

// --- pooling ------------------------------------------------------------------

static k::Pool2dParams pool_params(const char* op, const Tensor& x, int kernel, int stride,
                                   int pad) {
  check_dtype(op, "input", x, DType::F32);
  check_shape(x.ndim() == 4, op, "input of shape (N, C, H, W)", x);
  return k::pool2d_params(op, as_int(op, "N", x.size(0)), as_int(op, "C", x.size(1)),
                          as_int(op, "H", x.size(2)), as_int(op, "W", x.size(3)), kernel, kernel,
                          stride, pad);
}

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int pad) {
  [[maybe_unused]] const char* op = "max_pool2d";
  const auto p = pool_params(op, x, kernel, stride, pad);
  const Device d = x.device();
  Tensor y = Tensor::empty({p.N, p.C, p.P, p.Q}, d);
  Tensor arg = Tensor::empty({p.N, p.C, p.P, p.Q}, d, DType::I32);
  if (d.is_cuda()) {
    SN_GPU(k::max_pool2d_forward_cuda(p, x.data<float>(), y.data<float>(), arg.data<int32_t>(),
                                      stream()));
  } else {
    k::max_pool2d_forward_cpu(p, x.data<float>(), y.data<float>(), arg.data<int32_t>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [p, arg](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "max_pool2d backward";
      if (gy.is_cuda()) {
        SN_GPU(k::max_pool2d_backward_cuda(p, gy.data<float>(), arg.data<int32_t>(),
                                           g[0].data<float>(), stream()));
      } else {
        k::max_pool2d_backward_cpu(p, gy.data<float>(), arg.data<int32_t>(), g[0].data<float>());
      }
    });
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int pad) {
  [[maybe_unused]] const char* op = "avg_pool2d";
  const auto p = pool_params(op, x, kernel, stride, pad);
  const Device d = x.device();
  Tensor y = Tensor::empty({p.N, p.C, p.P, p.Q}, d);
  if (d.is_cuda()) {
    SN_GPU(k::avg_pool2d_forward_cuda(p, x.data<float>(), y.data<float>(), stream()));
  } else {
    k::avg_pool2d_forward_cpu(p, x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [p](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "avg_pool2d backward";
      if (gy.is_cuda()) {
        SN_GPU(k::avg_pool2d_backward_cuda(p, gy.data<float>(), g[0].data<float>(), stream()));
      } else {
        k::avg_pool2d_backward_cpu(p, gy.data<float>(), g[0].data<float>());
      }
    });
  }
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  [[maybe_unused]] const char* op = "global_avg_pool";
  check_dtype(op, "input", x, DType::F32);
  check_shape(x.ndim() == 4 && x.size(2) > 0 && x.size(3) > 0, op,
              "input of shape (N, C, H, W) with H, W > 0", x);
  const int planes = as_int(op, "N*C", x.size(0) * x.size(1));
  const int hw = as_int(op, "H*W", x.size(2) * x.size(3));
  Tensor y = Tensor::empty({x.size(0), x.size(1), 1, 1}, x.device());
  if (x.is_cuda()) {
    SN_GPU(k::global_avg_pool_forward_cuda(planes, hw, x.data<float>(), y.data<float>(), stream()));
  } else {
    k::global_avg_pool_forward_cpu(planes, hw, x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [planes, hw](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "global_avg_pool backward";
      if (gy.is_cuda()) {
        SN_GPU(k::global_avg_pool_backward_cuda(planes, hw, gy.data<float>(), g[0].data<float>(),
                                                stream()));
      } else {
        k::global_avg_pool_backward_cpu(planes, hw, gy.data<float>(), g[0].data<float>());
      }
    });
  }
  return y;
}

// --- pointwise ------------------------------------------------------------------

Tensor relu(const Tensor& x) {
  [[maybe_unused]] const char* op = "relu";
  check_dtype(op, "input", x, DType::F32);
  Tensor y = Tensor::empty(x.shape(), x.device());
  if (x.is_cuda()) {
    SN_GPU(k::relu_forward_cuda(x.numel(), x.data<float>(), y.data<float>(), stream()));
  } else {
    k::relu_forward_cpu(x.numel(), x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [ys = y.detach()](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "relu backward";
      if (gy.is_cuda()) {
        SN_GPU(k::relu_backward_cuda(gy.numel(), ys.data<float>(), gy.data<float>(),
                                     g[0].data<float>(), stream()));
      } else {
        k::relu_backward_cpu(gy.numel(), ys.data<float>(), gy.data<float>(), g[0].data<float>());
      }
    });
  }
  return y;
}

Tensor sigmoid(const Tensor& x) {
  [[maybe_unused]] const char* op = "sigmoid";
  check_dtype(op, "input", x, DType::F32);
  Tensor y = Tensor::empty(x.shape(), x.device());
  if (x.is_cuda()) {
    SN_GPU(k::sigmoid_forward_cuda(x.numel(), x.data<float>(), y.data<float>(), stream()));
  } else {
    k::sigmoid_forward_cpu(x.numel(), x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [ys = y.detach()](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "sigmoid backward";
      if (gy.is_cuda()) {
        SN_GPU(k::sigmoid_backward_cuda(gy.numel(), ys.data<float>(), gy.data<float>(),
                                        g[0].data<float>(), stream()));
      } else {
        k::sigmoid_backward_cpu(gy.numel(), ys.data<float>(), gy.data<float>(), g[0].data<float>());
      }
    });
  }
  return y;
}

void accumulate(const Tensor& x, Tensor& y) {
  [[maybe_unused]] const char* op = "accumulate";
  check_dtype(op, "source", x, DType::F32);
  check_dtype(op, "destination", y, DType::F32);
  check_shape(x.shape() == y.shape(), op, "a tensor of shape " + shape_str(y.shape()), x);
  check_same_device(op, {&x, &y});
  if (y.is_cuda()) {
    SN_GPU(k::accumulate_cuda(y.numel(), x.data<float>(), y.data<float>(), stream()));
  } else {
    k::accumulate_cpu(y.numel(), x.data<float>(), y.data<float>());
  }
}

Tensor add(const Tensor& a, const Tensor& b) {
  [[maybe_unused]] const char* op = "add";
  check_dtype(op, "first operand", a, DType::F32);
  check_dtype(op, "second operand", b, DType::F32);
  check_shape(a.shape() == b.shape(), op, "a tensor of shape " + shape_str(a.shape()), b);
  check_same_device(op, {&a, &b});
  Tensor y = Tensor::empty(a.shape(), a.device());
  if (a.is_cuda()) {
    SN_GPU(k::add_forward_cuda(a.numel(), a.data<float>(), b.data<float>(), y.data<float>(),
                               stream()));
  } else {
    k::add_forward_cpu(a.numel(), a.data<float>(), b.data<float>(), y.data<float>());
  }
  if (needs_grad({&a, &b})) {
    record(y, op, {a, b}, [](const Tensor& gy, const std::vector<Tensor>& g) {
      for (const Tensor& gi : g)
        if (gi.defined()) {
          Tensor dst = gi;
          accumulate(gy, dst);
        }
    });
  }
  return y;
}

// --- batch norm -----------------------------------------------------------------

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum, float eps) {
  [[maybe_unused]] const char* op = "batch_norm";
  check_dtype(op, "input", x, DType::F32);
  check_shape(x.ndim() == 4 || x.ndim() == 2, op, "input of shape (N, C, H, W) or (N, C)", x);
  const int64_t C = x.size(1);
  const std::string cshape = "a tensor of shape (" + std::to_string(C) + ",)";
  for (const Tensor* t : {&gamma, &beta, &running_mean, &running_var}) {
    check_dtype(op, "parameter", *t, DType::F32);
    check_shape(t->ndim() == 1 && t->size(0) == C, op, cshape, *t);
  }
  check_same_device(op, {&x, &gamma, &beta, &running_mean, &running_var});
  if (!(eps > 0.0f)) throw ValueError("batch_norm: eps must be > 0, got " + std::to_string(eps));
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    throw ValueError("batch_norm: momentum must be in [0, 1], got " + std::to_string(momentum));
  const int64_t hw = x.ndim() == 4 ? x.size(2) * x.size(3) : 1;
  const auto p = k::batch_norm_params(as_int(op, "N", x.size(0)), as_int(op, "C", C),
                                      as_int(op, "H*W", hw), eps, momentum);
  const Device d = x.device();
  Tensor y = Tensor::empty(x.shape(), d);
  Tensor mean = Tensor::empty({C}, d), invstd = Tensor::empty({C}, d);
  if (training) {
    if (p.N * p.HW < 2)
      throw ShapeError("batch_norm: training needs more than one value per channel, got " +
                       x.str() + " (use a batch larger than 1)");
    if (d.is_cuda()) {
      SN_GPU(Tensor ws = workspace(k::batch_norm_workspace_bytes_cuda(p), d);
             k::batch_norm_forward_train_cuda(
                 p, x.data<float>(), gamma.data<float>(), beta.data<float>(), y.data<float>(),
                 mean.data<float>(), invstd.data<float>(), running_mean.data<float>(),
                 running_var.data<float>(), ws.data<uint8_t>(), stream()));
    } else {
      k::batch_norm_forward_train_cpu(p, x.data<float>(), gamma.data<float>(), beta.data<float>(),
                                      y.data<float>(), mean.data<float>(), invstd.data<float>(),
                                      running_mean.data<float>(), running_var.data<float>());
    }
  } else {
    if (d.is_cuda()) {
      SN_GPU(k::batch_norm_forward_eval_cuda(p, x.data<float>(), gamma.data<float>(),
                                             beta.data<float>(), running_mean.data<float>(),
                                             running_var.data<float>(), y.data<float>(), stream()));
    } else {
      k::batch_norm_forward_eval_cpu(p, x.data<float>(), gamma.data<float>(), beta.data<float>(),
                                     running_mean.data<float>(), running_var.data<float>(),
                                     y.data<float>());
    }
  }
  if (needs_grad({&x, &gamma, &beta})) {
    if (!training) {  // statistics are constants: the running ones
      mean.copy_(running_mean);
      if (d.is_cuda()) {
        SN_GPU(k::batch_norm_invstd_cuda(p.C, eps, running_var.data<float>(), invstd.data<float>(),
                                         stream()));
      } else {
        k::batch_norm_invstd_cpu(p.C, eps, running_var.data<float>(), invstd.data<float>());
      }
    }
    record(y, op, {x, gamma, beta},
           [p, training, xs = x.detach(), gs = gamma.detach(), mean, invstd](
               const Tensor& gy, const std::vector<Tensor>& g) {
             [[maybe_unused]] const char* op = "batch_norm backward";
             Tensor dx = g[0], dgamma = or_scratch(g[1], gs), dbeta = or_scratch(g[2], gs);
             if (gy.is_cuda()) {
               SN_GPU(Tensor ws = workspace(k::batch_norm_workspace_bytes_cuda(p), gy.device());
                      k::batch_norm_backward_cuda(
                          p, training, xs.data<float>(), gy.data<float>(), gs.data<float>(),
                          mean.data<float>(), invstd.data<float>(), ptr_or_null(dx),
                          dgamma.data<float>(), dbeta.data<float>(), ws.data<uint8_t>(), stream()));
             } else {
               k::batch_norm_backward_cpu(p, training, xs.data<float>(), gy.data<float>(),
                                          gs.data<float>(), mean.data<float>(),
                                          invstd.data<float>(), ptr_or_null(dx),
                                          dgamma.data<float>(), dbeta.data<float>());
             }
           });
  }
  return y;
}

// --- dropout --------------------------------------------------------------------

Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  [[maybe_unused]] const char* op = "dropout";
  check_dtype(op, "input", x, DType::F32);
  if (!(p >= 0.0f && p < 1.0f))
    throw ValueError("dropout: probability must be in [0, 1), got " + std::to_string(p));
  if (!training || p == 0.0f) return x;
  const uint64_t seed = gen.seed(), offset = gen.next_offset();
  Tensor y = Tensor::empty(x.shape(), x.device());
  if (x.is_cuda()) {
    SN_GPU(k::dropout_forward_cuda(x.numel(), p, seed, offset, x.data<float>(), y.data<float>(),
                                   stream()));
  } else {
    k::dropout_forward_cpu(x.numel(), p, seed, offset, x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [p, seed, offset](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "dropout backward";
      if (gy.is_cuda()) {
        SN_GPU(k::dropout_backward_cuda(gy.numel(), p, seed, offset, gy.data<float>(),
                                        g[0].data<float>(), stream()));
      } else {
        k::dropout_backward_cpu(gy.numel(), p, seed, offset, gy.data<float>(), g[0].data<float>());
      }
    });
  }
  return y;
}

// --- loss -------------------------------------------------------------------------

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  [[maybe_unused]] const char* op = "cross_entropy";
  check_dtype(op, "logits", logits, DType::F32);
  check_dtype(op, "labels", labels, DType::I32);
  check_shape(logits.ndim() == 2 && logits.size(0) > 0 && logits.size(1) > 0, op,
              "logits of shape (N, C) with N, C > 0", logits);
  check_shape(labels.ndim() == 1 && labels.size(0) == logits.size(0), op,
              "labels of shape (" + std::to_string(logits.size(0)) + ",)", labels);
  check_same_device(op, {&logits, &labels});
  const auto p =
      k::cross_entropy_params(as_int(op, "N", logits.size(0)), as_int(op, "C", logits.size(1)));
  if (labels.device().is_cpu()) {  // on the GPU a bad label turns the loss into NaN instead
    const int32_t* lab = labels.host<int32_t>();
    for (int i = 0; i < p.N; ++i)
      if (lab[i] < 0 || lab[i] >= p.C)
        throw ValueError("cross_entropy: label " + std::to_string(lab[i]) + " at row " +
                         std::to_string(i) + " is outside [0, " + std::to_string(p.C) + ")");
  }
  const Device d = logits.device();
  Tensor loss = Tensor::empty({}, d);
  Tensor probs = Tensor::empty(logits.shape(), d);
  if (d.is_cuda()) {
    SN_GPU(k::softmax_ce_forward_cuda(p, logits.data<float>(), labels.data<int32_t>(),
                                      loss.data<float>(), probs.data<float>(), stream()));
  } else {
    k::softmax_ce_forward_cpu(p, logits.data<float>(), labels.data<int32_t>(), loss.data<float>(),
                              probs.data<float>());
  }
  if (needs_grad({&logits})) {
    record(loss, op, {logits},
           [p, probs, labs = labels.detach()](const Tensor& gy, const std::vector<Tensor>& g) {
             [[maybe_unused]] const char* op = "cross_entropy backward";
             if (gy.is_cuda()) {
               SN_GPU(k::softmax_ce_backward_cuda(p, probs.data<float>(), labs.data<int32_t>(),
                                                  gy.data<float>(), g[0].data<float>(), stream()));
             } else {
               k::softmax_ce_backward_cpu(p, probs.data<float>(), labs.data<int32_t>(),
                                          gy.data<float>(), g[0].data<float>());
             }
           });
  }
  return loss;
}

// --- resize ------------------------------------------------------------------------

Tensor resize_bilinear(const Tensor& x, int out_h, int out_w) {
  [[maybe_unused]] const char* op = "resize_bilinear";
  check_dtype(op, "input", x, DType::F32);
  check_shape(x.ndim() == 4, op, "input of shape (N, C, H, W)", x);
  const auto p =
      k::resize_params(as_int(op, "N", x.size(0)), as_int(op, "C", x.size(1)),
                       as_int(op, "H", x.size(2)), as_int(op, "W", x.size(3)), out_h, out_w);
  Tensor y = Tensor::empty({p.N, p.C, p.OH, p.OW}, x.device());
  if (x.is_cuda()) {
    SN_GPU(k::resize_bilinear_forward_cuda(p, x.data<float>(), y.data<float>(), stream()));
  } else {
    k::resize_bilinear_forward_cpu(p, x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    record(y, op, {x}, [p](const Tensor& gy, const std::vector<Tensor>& g) {
      [[maybe_unused]] const char* op = "resize_bilinear backward";
      if (gy.is_cuda()) {
        SN_GPU(k::resize_bilinear_backward_cuda(p, gy.data<float>(), g[0].data<float>(), stream()));
      } else {
        k::resize_bilinear_backward_cpu(p, gy.data<float>(), g[0].data<float>());
      }
    });
  }
  return y;
}

// --- no autograd ---------------------------------------------------------------------

Tensor argmax(const Tensor& x) {
  [[maybe_unused]] const char* op = "argmax";
  check_dtype(op, "input", x, DType::F32);
  check_shape(x.ndim() == 2 && x.size(1) > 0, op, "input of shape (N, C) with C > 0", x);
  const int N = as_int(op, "N", x.size(0)), C = as_int(op, "C", x.size(1));
  Tensor idx = Tensor::empty({N}, x.device(), DType::I32);
  if (x.is_cuda()) {
    SN_GPU(k::argmax_rows_cuda(N, C, x.data<float>(), idx.data<int32_t>(), stream()));
  } else {
    k::argmax_rows_cpu(N, C, x.data<float>(), idx.data<int32_t>());
  }
  return idx;
}

Tensor count_correct(const Tensor& logits, const Tensor& labels) {
  [[maybe_unused]] const char* op = "count_correct";
  check_dtype(op, "logits", logits, DType::F32);
  check_dtype(op, "labels", labels, DType::I32);
  check_shape(logits.ndim() == 2 && logits.size(1) > 0, op, "logits of shape (N, C)", logits);
  check_shape(labels.ndim() == 1 && labels.size(0) == logits.size(0), op,
              "labels of shape (" + std::to_string(logits.size(0)) + ",)", labels);
  check_same_device(op, {&logits, &labels});
  const int N = as_int(op, "N", logits.size(0)), C = as_int(op, "C", logits.size(1));
  Tensor out = Tensor::empty({}, logits.device(), DType::I32);
  if (logits.is_cuda()) {
    SN_GPU(k::count_correct_cuda(N, C, logits.data<float>(), labels.data<int32_t>(),
                                 out.data<int32_t>(), stream()));
  } else {
    k::count_correct_cpu(N, C, logits.data<float>(), labels.data<int32_t>(), out.data<int32_t>());
  }
  return out;
}

Tensor resize_gather_u8(const Tensor& images, const Tensor& index, int out_h, int out_w) {
  [[maybe_unused]] const char* op = "resize_gather_u8";
  check_dtype(op, "images", images, DType::U8);
  check_dtype(op, "index", index, DType::I32);
  check_shape(images.ndim() == 3, op, "images of shape (count, H, W)", images);
  check_shape(index.ndim() == 1, op, "index of shape (B,)", index);
  check_same_device(op, {&images, &index});
  const auto p =
      k::resize_params(as_int(op, "B", index.size(0)), 1, as_int(op, "H", images.size(1)),
                       as_int(op, "W", images.size(2)), out_h, out_w);
  const int count = as_int(op, "count", images.size(0));
  Tensor y = Tensor::empty({p.N, 1, p.OH, p.OW}, images.device());
  if (images.is_cuda()) {
    SN_GPU(k::resize_gather_u8_cuda(p, count, images.data<uint8_t>(), index.data<int32_t>(),
                                    y.data<float>(), stream()));
  } else {
    const int32_t* idx = index.host<int32_t>();
    for (int i = 0; i < p.N; ++i)
      if (idx[i] < 0 || idx[i] >= images.size(0))
        throw ValueError("resize_gather_u8: index " + std::to_string(idx[i]) + " outside [0, " +
                         std::to_string(images.size(0)) + ")");
    k::resize_gather_u8_cpu(p, count, images.data<uint8_t>(), idx, y.data<float>());
  }
  return y;
}

Tensor gather_labels(const Tensor& labels, const Tensor& index) {
  [[maybe_unused]] const char* op = "gather_labels";
  check_dtype(op, "labels", labels, DType::U8);
  check_dtype(op, "index", index, DType::I32);
  check_shape(labels.ndim() == 1, op, "labels of shape (count,)", labels);
  check_shape(index.ndim() == 1, op, "index of shape (B,)", index);
  check_same_device(op, {&labels, &index});
  const int n = as_int(op, "B", index.size(0));
  const int count = as_int(op, "count", labels.size(0));
  Tensor out = Tensor::empty({n}, labels.device(), DType::I32);
  if (labels.is_cuda()) {
    SN_GPU(k::gather_labels_u8_cuda(n, count, labels.data<uint8_t>(), index.data<int32_t>(),
                                    out.data<int32_t>(), stream()));
  } else {
    const int32_t* idx = index.host<int32_t>();
    for (int i = 0; i < n; ++i)
      if (idx[i] < 0 || idx[i] >= labels.size(0))
        throw ValueError("gather_labels: index " + std::to_string(idx[i]) + " outside [0, " +
                         std::to_string(labels.size(0)) + ")");
    k::gather_labels_u8_cpu(n, count, labels.data<uint8_t>(), idx, out.data<int32_t>());
  }
  return out;
}

void sgd_step(Tensor& param, const Tensor& grad, Tensor& buf, const k::SgdParams& p) {
  [[maybe_unused]] const char* op = "sgd_step";
  check_dtype(op, "parameters", param, DType::F32);
  check_dtype(op, "gradients", grad, DType::F32);
  check_shape(grad.shape() == param.shape(), op, "gradients of shape " + shape_str(param.shape()),
              grad);
  const bool use_buf = p.momentum != 0.0f;
  if (use_buf) {
    check_dtype(op, "momentum buffer", buf, DType::F32);
    check_shape(buf.shape() == param.shape(), op,
                "momentum buffer of shape " + shape_str(param.shape()), buf);
  }
  check_same_device(op, {&param, &grad, &buf});
  if (!(p.lr >= 0.0f) || !std::isfinite(p.lr))
    throw ValueError("sgd_step: learning rate must be finite and >= 0, got " +
                     std::to_string(p.lr));
  if (!(p.momentum >= 0.0f) || !(p.weight_decay >= 0.0f))
    throw ValueError("sgd_step: momentum and weight decay must be >= 0");
  if (p.nesterov && p.momentum == 0.0f)
    throw ValueError("sgd_step: Nesterov momentum requires momentum > 0");
  float* b = use_buf ? buf.data<float>() : nullptr;
  if (param.is_cuda()) {
    SN_GPU(
        k::sgd_step_cuda(param.numel(), p, param.data<float>(), grad.data<float>(), b, stream()));
  } else {
    k::sgd_step_cpu(param.numel(), p, param.data<float>(), grad.data<float>(), b);
  }
}

}  // namespace scratchnet
