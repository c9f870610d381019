// Pointwise ops, dropout and resize: checks, dispatch and autograd nodes.
#include "core/ops_internal.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/resize.h"

namespace scratchnet {

using namespace ops_detail;

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
    // Saves its output, not its input: the next conv saves the same storage,
    // and the pre-ReLU tensor can die as soon as the forward moves on.
    record_writing(y, op, {x}, {y.detach()},
           [](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>& s,
              const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "relu backward";
             const Tensor& ys = s[0];
             if (gy.is_cuda()) {
               SN_GPU(k::relu_backward_cuda(gy.numel(), ys.data<float>(), gy.data<float>(),
                                            g[0].data<float>(), stream(), fresh[0]));
             } else {
               k::relu_backward_cpu(gy.numel(), ys.data<float>(), gy.data<float>(),
                                    g[0].data<float>(), fresh[0]);
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
    record_writing(y, op, {x}, {y.detach()},
           [](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>& s,
              const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "sigmoid backward";
             const Tensor& ys = s[0];
             if (gy.is_cuda()) {
               SN_GPU(k::sigmoid_backward_cuda(gy.numel(), ys.data<float>(), gy.data<float>(),
                                               g[0].data<float>(), stream(), fresh[0]));
             } else {
               k::sigmoid_backward_cpu(gy.numel(), ys.data<float>(), gy.data<float>(),
                                       g[0].data<float>(), fresh[0]);
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

namespace {

// add's and add_relu's operands: F32, one shape, one device.
void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  check_dtype(op, "first operand", a, DType::F32);
  check_dtype(op, "second operand", b, DType::F32);
  check_shape(a.shape() == b.shape(), op, "a tensor of shape " + shape_str(a.shape()), b);
  check_same_device(op, {&a, &b});
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  [[maybe_unused]] const char* op = "add";
  check_operands(op, a, b);
  Tensor y = Tensor::empty(a.shape(), a.device());
  if (a.is_cuda()) {
    SN_GPU(k::add_forward_cuda(a.numel(), a.data<float>(), b.data<float>(), y.data<float>(),
                               stream()));
  } else {
    k::add_forward_cpu(a.numel(), a.data<float>(), b.data<float>(), y.data<float>());
  }
  if (needs_grad({&a, &b})) {
    // A fresh input gradient is a copy of the output gradient (one pass,
    // no memset); add(x, x) never gets fresh ones (core/autograd.h).
    record_writing(y, op, {a, b}, {},
                   [](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>&,
                      const std::vector<bool>& fresh) {
                     for (std::size_t i = 0; i < g.size(); ++i) {
                       if (!g[i].defined()) continue;
                       Tensor dst = g[i];
                       if (fresh[i])
                         dst.copy_(gy);
                       else
                         accumulate(gy, dst);
                     }
                   });
  }
  return y;
}

Tensor add_relu(const Tensor& a, const Tensor& b) {
  [[maybe_unused]] const char* op = "add_relu";
  check_operands(op, a, b);
  Tensor y = Tensor::empty(a.shape(), a.device());
  if (a.is_cuda()) {
    SN_GPU(k::add_relu_forward_cuda(a.numel(), a.data<float>(), b.data<float>(), y.data<float>(),
                                    stream()));
  } else {
    k::add_relu_forward_cpu(a.numel(), a.data<float>(), b.data<float>(), y.data<float>());
  }
  if (needs_grad({&a, &b})) {
    // Saves its output (the mask y > 0), as relu(add(a, b)) would: add saves nothing.
    record_writing(y, op, {a, b}, {y.detach()},
           [](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>& s,
              const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "add_relu backward";
             const Tensor& ys = s[0];
             if (gy.is_cuda()) {
               SN_GPU(k::add_relu_backward_cuda(gy.numel(), ys.data<float>(), gy.data<float>(),
                                                ptr_or_null(g[0]), ptr_or_null(g[1]), stream(),
                                                fresh[0], fresh[1]));
             } else {
               k::add_relu_backward_cpu(gy.numel(), ys.data<float>(), gy.data<float>(),
                                        ptr_or_null(g[0]), ptr_or_null(g[1]), fresh[0], fresh[1]);
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
  // CUDA: the offset may live in device memory while a graph captures the step (rng.h).
  const uint64_t seed = gen.example_seed();
  const Generator::OffsetRef off =
      x.is_cuda() ? gen.next_offset_ref() : Generator::OffsetRef{nullptr, gen.next_offset()};
  const uint64_t* base = off.base;
  const uint64_t offset = off.offset;
  Tensor y = Tensor::empty(x.shape(), x.device());
  if (x.is_cuda()) {
    SN_GPU(k::dropout_forward_cuda(x.numel(), p, seed, offset, x.data<float>(), y.data<float>(),
                                   stream(), base));
  } else {
    k::dropout_forward_cpu(x.numel(), p, seed, offset, x.data<float>(), y.data<float>());
  }
  if (needs_grad({&x})) {
    // Saves no tensor: backward regenerates the mask from (seed, offset).
    // A fresh input gradient is written, dropped elements included (as 0).
    record_writing(y, op, {x}, {},
           [p, seed, base, offset](const Tensor& gy, const std::vector<Tensor>& g,
                                   const std::vector<Tensor>&, const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "dropout backward";
             if (gy.is_cuda()) {
               SN_GPU(k::dropout_backward_cuda(gy.numel(), p, seed, offset, gy.data<float>(),
                                               g[0].data<float>(), stream(), base, fresh[0]));
             } else {
               k::dropout_backward_cpu(gy.numel(), p, seed, offset, gy.data<float>(),
                                       g[0].data<float>(), fresh[0]);
             }
           });
  }
  return y;
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
    record(y, op, {x}, {},
           [p](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>&) {
             [[maybe_unused]] const char* op = "resize_bilinear backward";
             if (gy.is_cuda()) {
               SN_GPU(k::resize_bilinear_backward_cuda(p, gy.data<float>(), g[0].data<float>(),
                                                       stream()));
             } else {
               k::resize_bilinear_backward_cpu(p, gy.data<float>(), g[0].data<float>());
             }
           });
  }
  return y;
}

}  // namespace scratchnet
