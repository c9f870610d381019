// Double-precision references for the [cuda] tests' rule 2 (see
// test_cuda_helpers.h): GEMM, conv2d (forward, data gradient, weight and
// bias gradient) and average-pool backward, computed naively from the float
// inputs (linear is three GEMMs). Each
// returns, per output element, the exact-as-double value and the 2-norm of
// the terms that were summed into it (products, bias, the value accumulated
// into), which scale the allowed float error.
// No CUDA here: the rule itself is tested on the CPU (test_tolerance_rule.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/pool2d.h"

namespace scratchnet::cudatest {

struct Ref64 {
  std::vector<double> value, norm;
};

namespace ref64detail {

// Σ and Σ² of the terms of one element.
struct Acc {
  double s = 0.0, q = 0.0;
  void add(double t) {
    s += t;
    q += t * t;
  }
};

inline Ref64 sized(std::size_t n) {
  Ref64 r;
  r.value.resize(n);
  r.norm.resize(n);
  return r;
}

inline void store(Ref64& r, std::size_t i, const Acc& a) {
  r.value[i] = a.s;
  r.norm[i] = std::sqrt(a.q);
}

}  // namespace ref64detail

// C = alpha op(A) op(B) + beta C over the M x N window of C (row i*N + j of
// the result is C[i * ldc + j]). Terms: alpha * a * b, and beta * c when beta != 0.
inline Ref64 gemm_ref64(const kernels::GemmParams& p, const float* A, const float* B,
                        const float* C) {
  using namespace ref64detail;
  Ref64 r = sized(static_cast<std::size_t>(p.M) * p.N);
  for (int i = 0; i < p.M; ++i)
    for (int j = 0; j < p.N; ++j) {
      Acc a;
      for (int k = 0; k < p.K; ++k) {
        const double x = p.trans_a ? A[static_cast<int64_t>(k) * p.lda + i]
                                   : A[static_cast<int64_t>(i) * p.lda + k];
        const double y = p.trans_b ? B[static_cast<int64_t>(j) * p.ldb + k]
                                   : B[static_cast<int64_t>(k) * p.ldb + j];
        a.add(double(p.alpha) * x * y);
      }
      if (p.beta != 0.0f) a.add(double(p.beta) * C[static_cast<int64_t>(i) * p.ldc + j]);
      store(r, static_cast<std::size_t>(i) * p.N + j, a);
    }
  return r;
}

// y (N, K, P, Q) = conv(x, w) + b (b may be null).
inline Ref64 conv2d_forward_ref64(const kernels::Conv2dParams& p, const float* x, const float* w,
                                  const float* b) {
  using namespace ref64detail;
  Ref64 r = sized(static_cast<std::size_t>(p.N) * p.K * p.P * p.Q);
  std::size_t o = 0;
  for (int n = 0; n < p.N; ++n)
    for (int k = 0; k < p.K; ++k)
      for (int oh = 0; oh < p.P; ++oh)
        for (int ow = 0; ow < p.Q; ++ow, ++o) {
          Acc a;
          if (b) a.add(b[k]);
          for (int c = 0; c < p.C; ++c)
            for (int rr = 0; rr < p.R; ++rr) {
              const int h = oh * p.stride - p.pad + rr;
              if (h < 0 || h >= p.H) continue;
              for (int s = 0; s < p.S; ++s) {
                const int ww = ow * p.stride - p.pad + s;
                if (ww < 0 || ww >= p.W) continue;
                a.add(double(x[((int64_t(n) * p.C + c) * p.H + h) * p.W + ww]) *
                      w[((int64_t(k) * p.C + c) * p.R + rr) * p.S + s]);
              }
            }
          store(r, o, a);
        }
  return r;
}

// dx (N, C, H, W) = dx0 + conv_transpose(dy, w).
inline Ref64 conv2d_backward_data_ref64(const kernels::Conv2dParams& p, const float* dy,
                                        const float* w, const float* dx0) {
  using namespace ref64detail;
  Ref64 r = sized(static_cast<std::size_t>(p.N) * p.C * p.H * p.W);
  std::size_t o = 0;
  for (int n = 0; n < p.N; ++n)
    for (int c = 0; c < p.C; ++c)
      for (int h = 0; h < p.H; ++h)
        for (int ww = 0; ww < p.W; ++ww, ++o) {
          Acc a;
          a.add(dx0[o]);
          for (int k = 0; k < p.K; ++k)
            for (int rr = 0; rr < p.R; ++rr) {
              const int th = h + p.pad - rr;
              if (th < 0 || th % p.stride) continue;
              const int oh = th / p.stride;
              if (oh >= p.P) continue;
              for (int s = 0; s < p.S; ++s) {
                const int tw = ww + p.pad - s;
                if (tw < 0 || tw % p.stride) continue;
                const int ow = tw / p.stride;
                if (ow >= p.Q) continue;
                a.add(double(dy[((int64_t(n) * p.K + k) * p.P + oh) * p.Q + ow]) *
                      w[((int64_t(k) * p.C + c) * p.R + rr) * p.S + s]);
              }
            }
          store(r, o, a);
        }
  return r;
}

// dw (K, C, R, S) = dw0 + Σ_n Σ_pq x * dy.
inline Ref64 conv2d_backward_weight_ref64(const kernels::Conv2dParams& p, const float* x,
                                          const float* dy, const float* dw0) {
  using namespace ref64detail;
  Ref64 r = sized(static_cast<std::size_t>(p.K) * p.C * p.R * p.S);
  std::size_t o = 0;
  for (int k = 0; k < p.K; ++k)
    for (int c = 0; c < p.C; ++c)
      for (int rr = 0; rr < p.R; ++rr)
        for (int s = 0; s < p.S; ++s, ++o) {
          Acc a;
          a.add(dw0[o]);
          for (int n = 0; n < p.N; ++n)
            for (int oh = 0; oh < p.P; ++oh) {
              const int h = oh * p.stride - p.pad + rr;
              if (h < 0 || h >= p.H) continue;
              for (int ow = 0; ow < p.Q; ++ow) {
                const int ww = ow * p.stride - p.pad + s;
                if (ww < 0 || ww >= p.W) continue;
                a.add(double(x[((int64_t(n) * p.C + c) * p.H + h) * p.W + ww]) *
                      dy[((int64_t(n) * p.K + k) * p.P + oh) * p.Q + ow]);
              }
            }
          store(r, o, a);
        }
  return r;
}

// db (K) = db0 + Σ_n Σ_pq dy.
inline Ref64 conv2d_backward_bias_ref64(const kernels::Conv2dParams& p, const float* dy,
                                        const float* db0) {
  using namespace ref64detail;
  Ref64 r = sized(static_cast<std::size_t>(p.K));
  const int64_t pq = int64_t(p.P) * p.Q;
  for (int k = 0; k < p.K; ++k) {
    Acc a;
    a.add(db0[k]);
    for (int n = 0; n < p.N; ++n)
      for (int64_t i = 0; i < pq; ++i) a.add(dy[(int64_t(n) * p.K + k) * pq + i]);
    store(r, static_cast<std::size_t>(k), a);
  }
  return r;
}

// fp64 reference of average-pool backward: dx = dx0 + Σ over the windows
// covering each input of dy * inv (inv = 1/(R*S) as a float, as both kernels).
inline Ref64 avg_pool_backward_ref64(const kernels::Pool2dParams& p, const float* dy,
                                     const float* dx0) {
  Ref64 r;
  const int64_t in = int64_t(p.N) * p.C * p.H * p.W;
  std::vector<double> s(dx0, dx0 + in), q(static_cast<std::size_t>(in));
  for (int64_t i = 0; i < in; ++i) q[i] = double(dx0[i]) * dx0[i];
  const double inv = 1.0f / static_cast<float>(p.R * p.S);
  for (int64_t nc = 0; nc < int64_t(p.N) * p.C; ++nc)
    for (int oh = 0; oh < p.P; ++oh)
      for (int ow = 0; ow < p.Q; ++ow) {
        const double g = dy[(nc * p.P + oh) * p.Q + ow] * inv;
        for (int h = std::max(oh * p.stride - p.pad, 0);
             h < std::min(oh * p.stride - p.pad + p.R, p.H); ++h)
          for (int w = std::max(ow * p.stride - p.pad, 0);
               w < std::min(ow * p.stride - p.pad + p.S, p.W); ++w) {
            s[(nc * p.H + h) * p.W + w] += g;
            q[(nc * p.H + h) * p.W + w] += g * g;
          }
      }
  r.value = s;
  r.norm.resize(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) r.norm[i] = std::sqrt(q[i]);
  return r;
}

}  // namespace scratchnet::cudatest
