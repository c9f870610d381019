// The shape helpers: one place computes every op's params struct, so CPU,
// CUDA and tests never disagree on index arithmetic. Each validates its
// arguments and throws ShapeError naming the op.
#include <climits>

#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/pool2d.h"
#include "kernels/resize.h"
#include "kernels/softmax_ce.h"

namespace scratchnet::kernels {

namespace {
std::string s(long long v) {
  return std::to_string(v);
}
}  // namespace

GemmParams gemm_params(bool trans_a, bool trans_b, int M, int N, int K, float alpha, float beta) {
  require(M >= 0 && N >= 0 && K >= 0, "gemm",
          "sizes must be >= 0, got M=" + s(M) + " N=" + s(N) + " K=" + s(K));
  GemmParams p;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.M = M;
  p.N = N;
  p.K = K;
  p.lda = trans_a ? M : K;  // A stored M x K, or K x M when transposed
  p.ldb = trans_b ? K : N;  // B stored K x N, or N x K when transposed
  p.ldc = N;
  p.alpha = alpha;
  p.beta = beta;
  return p;
}

Conv2dParams conv2d_params(int N, int C, int H, int W, int K, int R, int S, int stride, int pad) {
  const char* op = "conv2d";
  require(N > 0 && C > 0 && H > 0 && W > 0, op,
          "input (N, C, H, W) must be positive, got (" + s(N) + ", " + s(C) + ", " + s(H) + ", " +
              s(W) + ")");
  require(K > 0 && R > 0 && S > 0, op,
          "weight (K, C, R, S) must be positive, got K=" + s(K) + " R=" + s(R) + " S=" + s(S));
  require(stride > 0, op, "stride must be >= 1, got " + s(stride));
  require(pad >= 0, op, "padding must be >= 0, got " + s(pad));
  require(H + 2 * pad >= R && W + 2 * pad >= S, op,
          "kernel " + s(R) + "x" + s(S) + " is larger than the padded input " + s(H + 2 * pad) +
              "x" + s(W + 2 * pad));
  Conv2dParams p{N, C, H, W, K, R, S, stride, pad, 0, 0};
  p.P = (H + 2 * pad - R) / stride + 1;
  p.Q = (W + 2 * pad - S) / stride + 1;
  require(static_cast<long long>(N) * K * p.P * p.Q < INT_MAX &&
              static_cast<long long>(N) * C * H * W < INT_MAX &&
              static_cast<long long>(C) * R * S * p.P * p.Q < INT_MAX,
          op, "tensor too large for 32-bit indexing");
  return p;
}

LinearParams linear_params(int N, int IN, int OUT) {
  require(N > 0 && IN > 0 && OUT > 0, "linear",
          "sizes must be positive, got N=" + s(N) + " in=" + s(IN) + " out=" + s(OUT));
  require(static_cast<long long>(N) * IN < INT_MAX && static_cast<long long>(N) * OUT < INT_MAX &&
              static_cast<long long>(IN) * OUT < INT_MAX,
          "linear", "tensor too large for 32-bit indexing");
  return {N, IN, OUT};
}

Pool2dParams pool2d_params(const char* op, int N, int C, int H, int W, int R, int S, int stride,
                           int pad) {
  require(N > 0 && C > 0 && H > 0 && W > 0, op,
          "input (N, C, H, W) must be positive, got (" + s(N) + ", " + s(C) + ", " + s(H) + ", " +
              s(W) + ")");
  require(R > 0 && S > 0, op, "kernel size must be >= 1, got " + s(R) + "x" + s(S));
  require(stride > 0, op, "stride must be >= 1, got " + s(stride));
  // PyTorch: "pad should be at most half of effective kernel size".
  require(pad >= 0 && 2 * pad <= R && 2 * pad <= S, op,
          "padding must be between 0 and half the kernel size, got " + s(pad) + " for kernel " +
              s(R) + "x" + s(S));
  require(H + 2 * pad >= R && W + 2 * pad >= S, op,
          "kernel " + s(R) + "x" + s(S) + " is larger than the padded input " + s(H + 2 * pad) +
              "x" + s(W + 2 * pad));
  Pool2dParams p{N, C, H, W, R, S, stride, pad, 0, 0};
  p.P = (H + 2 * pad - R) / stride + 1;
  p.Q = (W + 2 * pad - S) / stride + 1;
  require(static_cast<long long>(N) * C * H * W < INT_MAX, op,
          "tensor too large for 32-bit indexing");
  return p;
}

BatchNormParams batch_norm_params(int N, int C, int HW, float eps, float momentum) {
  require(N > 0 && C > 0 && HW > 0, "batch_norm",
          "sizes must be positive, got N=" + s(N) + " C=" + s(C) + " HW=" + s(HW));
  require(static_cast<long long>(N) * C * HW < INT_MAX, "batch_norm",
          "tensor too large for 32-bit indexing");
  BatchNormParams p;
  p.N = N;
  p.C = C;
  p.HW = HW;
  p.eps = eps;
  p.momentum = momentum;
  return p;
}

CrossEntropyParams cross_entropy_params(int N, int C) {
  require(N > 0 && C > 0, "cross_entropy",
          "logits must have N, C > 0, got N=" + s(N) + " C=" + s(C));
  require(static_cast<long long>(N) * C < INT_MAX, "cross_entropy",
          "tensor too large for 32-bit indexing");
  return {N, C};
}

ResizeParams resize_params(int N, int C, int H, int W, int OH, int OW) {
  const char* op = "resize_bilinear";
  require(N >= 0 && C > 0 && H > 0 && W > 0, op,
          "input (N, C, H, W) must be positive, got (" + s(N) + ", " + s(C) + ", " + s(H) + ", " +
              s(W) + ")");
  require(OH > 0 && OW > 0 && OH <= 16384 && OW <= 16384, op,
          "output size must be in 1..16384, got " + s(OH) + "x" + s(OW));
  require(static_cast<long long>(N) * C * OH * OW < INT_MAX, op,
          "tensor too large for 32-bit indexing");
  return {N, C, H, W, OH, OW};
}

}  // namespace scratchnet::kernels
