// conv2d and linear: checks, dispatch and autograd nodes (see core/ops.h).
#include "core/ops_internal.h"
#include "kernels/conv2d.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"

namespace scratchnet {

using namespace ops_detail;

// --- conv2d -------------------------------------------------------------------

namespace {

// The ReLU's backward of a fused X + ReLU op: dy * (y > 0) into a fresh buffer.
Tensor relu_masked_grad(const Tensor& gy_out, const Tensor& ys) {
  [[maybe_unused]] const char* op = "relu backward";
  const Device d = gy_out.device();
  Tensor gy = Tensor::empty(gy_out.shape(), d);  // written, not accumulated
  if (d.is_cuda()) {
    SN_GPU(k::relu_backward_cuda(gy.numel(), ys.data<float>(), gy_out.data<float>(),
                                 gy.data<float>(), stream(), true));
  } else {
    k::relu_backward_cpu(gy.numel(), ys.data<float>(), gy_out.data<float>(), gy.data<float>(),
                         true);
  }
  return gy;
}

// conv2d and conv2d_relu: with `relu`, y = max(conv, 0) (the CUDA epilogue or
// the CPU's ReLU in place) and backward first masks the output gradient with
// y > 0, exactly as a separate relu op's backward would.
Tensor conv2d_impl(const char* op, const Tensor& x, const Tensor& w, const Tensor& b, int stride,
                   int pad, bool relu) {
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
                                  y.data<float>(), ws.data<uint8_t>(), stream(), relu));
  } else {
    k::conv2d_forward_cpu(p, x.data<float>(), w.data<float>(), ptr_or_null(b), y.data<float>());
    if (relu) k::relu_forward_cpu(y.numel(), y.data<float>(), y.data<float>());
  }
  if (needs_grad({&x, &w, &b})) {
    // Saves its input (for the weight gradient) and weight (for the data
    // gradient); not its output, unless the ReLU's mask needs it.
    std::vector<Tensor> saved{x.detach(), w.detach()};
    if (relu) saved.push_back(y.detach());
    // Writes a fresh data gradient on the GPU (the dgrad epilogue's write
    // mode); the CPU kernel accumulates, so it zeroes a fresh one first.
    record_writing(y, op, {x, w, b}, std::move(saved),
           [p, has_bias = b.defined(), relu](const Tensor& gy_out, const std::vector<Tensor>& g,
                                             const std::vector<Tensor>& s,
                                             const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "conv2d backward";
             const Tensor &xs = s[0], &ws_ = s[1];
             const Device d = gy_out.device();
             const Tensor gy = relu ? relu_masked_grad(gy_out, s[2]) : gy_out;
             if (g[0].defined()) {
               if (d.is_cuda()) {
                 SN_GPU(Tensor ws = workspace(k::conv2d_workspace_bytes_cuda(p), d);
                        k::conv2d_backward_data_cuda(p, gy.data<float>(), ws_.data<float>(),
                                                     g[0].data<float>(), ws.data<uint8_t>(),
                                                     stream(), fresh[0]));
               } else {
                 zero_if_fresh(g[0], fresh[0]);
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

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad) {
  return conv2d_impl("conv2d", x, w, b, stride, pad, false);
}

Tensor conv2d_relu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad) {
  return conv2d_impl("conv2d_relu", x, w, b, stride, pad, true);
}

// --- linear -------------------------------------------------------------------

namespace {

// linear and linear_relu, as conv2d_impl: with `relu`, y = max(x wᵀ + b, 0)
// (the CUDA GEMM's epilogue or the CPU's ReLU in place) and backward first
// masks the output gradient with y > 0, as a separate relu op's backward would.
Tensor linear_impl(const char* op, const Tensor& x, const Tensor& w, const Tensor& b, bool relu) {
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
    SN_GPU(Tensor wsp = workspace(k::linear_workspace_bytes_cuda(p), d);
           k::linear_forward_cuda(p, x.data<float>(), w.data<float>(), ptr_or_null(b),
                                  y.data<float>(), wsp.data<uint8_t>(), stream(), relu));
  } else {
    k::linear_forward_cpu(p, x.data<float>(), w.data<float>(), ptr_or_null(b), y.data<float>());
    if (relu) k::relu_forward_cpu(y.numel(), y.data<float>(), y.data<float>());
  }
  if (needs_grad({&x, &w, &b})) {
    // The input gradient, when fresh, is written (GEMM beta 0).
    std::vector<Tensor> saved{x.detach(), w.detach()};
    if (relu) saved.push_back(y.detach());  // the ReLU's mask
    record_writing(y, op, {x, w, b}, std::move(saved),
           [p, has_bias = b.defined(), relu](const Tensor& gy_out, const std::vector<Tensor>& g,
                                             const std::vector<Tensor>& s,
                                             const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "linear backward";
             const Tensor &xs = s[0], &ws = s[1];
             const bool gpu = gy_out.is_cuda();
             const Tensor gy = relu ? relu_masked_grad(gy_out, s[2]) : gy_out;
             if (g[0].defined()) {
               if (gpu) {
                 SN_GPU(Tensor wsp = workspace(k::linear_workspace_bytes_cuda(p), gy.device());
                        k::linear_backward_data_cuda(p, gy.data<float>(), ws.data<float>(),
                                                     g[0].data<float>(), wsp.data<uint8_t>(),
                                                     stream(), fresh[0]));
               } else {
                 k::linear_backward_data_cpu(p, gy.data<float>(), ws.data<float>(),
                                             g[0].data<float>(), fresh[0]);
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

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  return linear_impl("linear", x, w, b, false);
}

Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& b) {
  return linear_impl("linear_relu", x, w, b, true);
}

}  // namespace scratchnet
