// Cross entropy, accuracy, the data-pipeline gathers and the SGD step.
#include <cmath>

#include "core/ops_internal.h"
#include "kernels/gather.h"
#include "kernels/resize.h"
#include "kernels/softmax_ce.h"

namespace scratchnet {

using namespace ops_detail;

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
    // Saves the softmax probabilities and the labels, not the logits.
    record_writing(loss, op, {logits}, {probs, labels.detach()},
           [p](const Tensor& gy, const std::vector<Tensor>& g, const std::vector<Tensor>& s,
               const std::vector<bool>& fresh) {
             [[maybe_unused]] const char* op = "cross_entropy backward";
             const Tensor &probs = s[0], &labs = s[1];
             if (gy.is_cuda()) {
               SN_GPU(k::softmax_ce_backward_cuda(p, probs.data<float>(), labs.data<int32_t>(),
                                                  gy.data<float>(), g[0].data<float>(), stream(),
                                                  fresh[0]));
             } else {
               k::softmax_ce_backward_cpu(p, probs.data<float>(), labs.data<int32_t>(),
                                          gy.data<float>(), g[0].data<float>(), fresh[0]);
             }
           });
  }
  return loss;
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
