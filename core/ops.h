// The differentiable ops. Each checks its arguments (ShapeError / ValueError
// naming the op and the offending shape or value), dispatches on the device to
// the CPU reference or the CUDA kernel (never silently falling back), and
// records an autograd node when an input needs a gradient. PyTorch semantics
// throughout; see the kernel headers in kernels/ for the exact formulas.
#pragma once
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/sgd.h"

namespace scratchnet {

// x (N, C, H, W), w (K, C, R, S), b (K) or undefined -> (N, K, P, Q)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride = 1, int pad = 0);
// relu(conv2d(...)) in one op: the same values bit for bit; on CUDA the ReLU
// runs in the convolution's epilogue, so the pre-ReLU tensor never exists.
// Saves x, w and its output (conv2d's and relu's saves together).
Tensor conv2d_relu(const Tensor& x, const Tensor& w, const Tensor& b, int stride = 1, int pad = 0);
// x (N, IN), w (OUT, IN), b (OUT) or undefined -> (N, OUT)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);
// relu(linear(...)) in one op: the same values bit for bit; on CUDA the ReLU
// (and the bias) run in the GEMM's epilogue. Saves x, w and its output.
Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& b);
// (N, C, H, W) -> (N, C, P, Q); PyTorch's output size, ceil_mode=False
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int pad = 0);
Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int pad = 0);
// (N, C, H, W) -> (N, C, 1, 1)
Tensor global_avg_pool(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // same shape
// relu(add(a, b)) in one op (a residual block's end); saves only its output.
Tensor add_relu(const Tensor& a, const Tensor& b);
// x (N, C, H, W) or (N, C); gamma, beta, running_mean, running_var (C).
// Training mode updates the running statistics in place.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum = 0.1f, float eps = 1e-5f);
// relu(batch_norm(...)) in one op: the same values bit for bit, without the
// intermediate tensor or a separate ReLU pass forward and backward.
Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var, bool training,
                       float momentum = 0.1f, float eps = 1e-5f);
// Sums doubles element-wise over the data-parallel ranks, in place, the same
// on every rank (train/distributed.h gives one; in one process: nothing to do).
using SumOverRanks = std::function<void(std::vector<double>&)>;
// batch_norm in training mode with the statistics of the whole batch over
// every rank (--sync-bn), the running statistics updated alike on every rank;
// dgamma/dbeta get this rank's share. Math and costs: core/ops_sync_bn.cpp.
Tensor batch_norm_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const Tensor& running_mean, const Tensor& running_var,
                         const SumOverRanks& sum_over_ranks, float momentum = 0.1f,
                         float eps = 1e-5f);
// Inverted dropout; identity when !training or p == 0. Draws one stream of gen.
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen);
// logits (N, C) F32, labels (N) I32 -> scalar mean loss
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
// (N, C, H, W) -> (N, C, OH, OW), bilinear, align_corners=False
Tensor resize_bilinear(const Tensor& x, int out_h, int out_w);

// --- no autograd ---
Tensor argmax(const Tensor& x);                                    // (N, C) -> (N) I32
Tensor count_correct(const Tensor& logits, const Tensor& labels);  // -> (1) I32 on x's device
// images (count, H, W) U8, index (B) I32 -> (B, 1, OH, OW) F32 in [0, 1]
Tensor resize_gather_u8(const Tensor& images, const Tensor& index, int out_h, int out_w);
// labels (count) U8, index (B) I32 -> (B) I32
Tensor gather_labels(const Tensor& labels, const Tensor& index);
// In place: param -= lr * (...). param, grad, buf: same shape, F32.
void sgd_step(Tensor& param, const Tensor& grad, Tensor& buf, const kernels::SgdParams& p);
// In place y += x (same shape and device).
void accumulate(const Tensor& x, Tensor& y);

}  // namespace scratchnet
