// Pooling and batch norm: checks, dispatch and autograd nodes (see core/ops.h).
#include "core/ops_internal.h"
#include "kernels/batchnorm.h"
#include "kernels/pool2d.h"

namespace scratchnet {

using namespace ops_detail;

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
    // Saves the argmax (int32), not the input: backward scatters through it.
    // Writes a fresh input gradient on the GPU (a gather per input element);
    // the CPU kernel scatters (+=), so it zeroes a fresh one first.
    record_writing(y, op, {x}, {arg},
           [p](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>& s,
               const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "max_pool2d backward";
             const Tensor& arg = s[0];
             if (gy.is_cuda()) {
               SN_GPU(k::max_pool2d_backward_cuda(p, gy.data<float>(), arg.data<int32_t>(),
                                                  g[0].data<float>(), stream(), fresh[0]));
             } else {
               zero_if_fresh(g[0], fresh[0]);
               k::max_pool2d_backward_cpu(p, gy.data<float>(), arg.data<int32_t>(),
                                          g[0].data<float>());
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
    // Writes a fresh input gradient: the GPU kernel gathers per input element;
    // the CPU kernel, a scatter, zeroes a plane before it (or, windows tiling
    // the input, writes each pixel's one term and zeroes the uncovered ones).
    record_writing(
        y, op, {x}, {},
        [p](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>&,
            const std::vector<bool>& fresh) {
          [[maybe_unused]] const char* op = "avg_pool2d backward";
          if (gy.is_cuda()) {
            SN_GPU(k::avg_pool2d_backward_cuda(p, gy.data<float>(), g[0].data<float>(), stream(),
                                               fresh[0]));
          } else {
            k::avg_pool2d_backward_cpu(p, gy.data<float>(), g[0].data<float>(), fresh[0]);
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
    record_writing(
        y, op, {x}, {},
        [planes, hw](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>&,
                     const std::vector<bool>& fresh) {
          [[maybe_unused]] const char* op = "global_avg_pool backward";
          if (gy.is_cuda()) {
            SN_GPU(k::global_avg_pool_backward_cuda(planes, hw, gy.data<float>(),
                                                    g[0].data<float>(), stream(), fresh[0]));
          } else {
            k::global_avg_pool_backward_cpu(planes, hw, gy.data<float>(), g[0].data<float>(),
                                            fresh[0]);
          }
        });
  }
  return y;
}

// --- batch norm -----------------------------------------------------------------

k::BatchNormParams ops_detail::batch_norm_checks(const char* op, const Tensor& x,
                                                const Tensor& gamma, const Tensor& beta,
                                                const Tensor& running_mean,
                                                const Tensor& running_var, float momentum,
                                                float eps) {
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
  return k::batch_norm_params(as_int(op, "N", x.size(0)), as_int(op, "C", C),
                              as_int(op, "H*W", hw), eps, momentum);
}

namespace {

// batch_norm and batch_norm_relu: one op, the ReLU fused into its kernels
// when `relu` (kernels/batchnorm.h).
Tensor batch_norm_op(const char* op, bool relu, const Tensor& x, const Tensor& gamma,
                     const Tensor& beta, const Tensor& running_mean, const Tensor& running_var,
                     bool training, float momentum, float eps) {
  auto p = batch_norm_checks(op, x, gamma, beta, running_mean, running_var, momentum, eps);
  p.relu = relu;
  const int64_t C = p.C;
  const Device d = x.device();
  Tensor y = Tensor::empty(x.shape(), d);
  Tensor mean = Tensor::empty({C}, d), invstd = Tensor::empty({C}, d);
  if (training) {
    if (p.N * p.HW < 2)
      throw ShapeError(std::string(op) + ": training needs more than one value per channel, got " +
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
    // Saves its input, gamma and the per-channel statistics; with the fused
    // ReLU also its output, whose mask (y > 0) backward applies to dy. That
    // output is what an unfused ReLU would have saved (and the next conv
    // saves the same storage), so fusing costs no saved memory.
    std::vector<Tensor> saved{x.detach(), gamma.detach(), mean, invstd};
    if (relu) saved.push_back(y.detach());
    // A fresh input gradient is written; dgamma, dbeta accumulate (leaves).
    record_writing(y, relu ? "batch_norm_relu" : "batch_norm", {x, gamma, beta}, std::move(saved),
           [p, training](const Tensor& gy, const std::vector<Tensor>& g,
                         const std::vector<Tensor>& s, const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "batch_norm backward";
             const Tensor &xs = s[0], &gs = s[1], &mean = s[2], &invstd = s[3];
             const float* ys = p.relu ? s[4].data<float>() : nullptr;
             Tensor dx = g[0], dgamma = or_scratch(g[1], gs), dbeta = or_scratch(g[2], gs);
             if (gy.is_cuda()) {
               SN_GPU(Tensor ws = workspace(k::batch_norm_workspace_bytes_cuda(p), gy.device());
                      k::batch_norm_backward_cuda(
                          p, training, xs.data<float>(), ys, gy.data<float>(), gs.data<float>(),
                          mean.data<float>(), invstd.data<float>(), ptr_or_null(dx),
                          dgamma.data<float>(), dbeta.data<float>(), ws.data<uint8_t>(), stream(),
                          fresh[0]));
             } else {
               k::batch_norm_backward_cpu(p, training, xs.data<float>(), ys, gy.data<float>(),
                                          gs.data<float>(), mean.data<float>(),
                                          invstd.data<float>(), ptr_or_null(dx),
                                          dgamma.data<float>(), dbeta.data<float>(), fresh[0]);
             }
           });
  }
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum, float eps) {
  return batch_norm_op("batch_norm", false, x, gamma, beta, running_mean, running_var, training,
                       momentum, eps);
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var, bool training,
                       float momentum, float eps) {
  return batch_norm_op("batch_norm_relu", true, x, gamma, beta, running_mean, running_var, training,
                       momentum, eps);
}

}  // namespace scratchnet
