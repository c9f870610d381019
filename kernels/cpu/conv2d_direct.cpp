// The conv2d weight gradient without im2col, for stride 1 and few input
// channels (LeNet's first layer: C = 1, K = 6, 5x5 over 28x28):
//   dw[k, c, r, s] += Σ_n Σ_p Σ_q dy[n, k, p, q] x_pad[n, c, p + r, q + s]
// There the GEMM of kernels/cpu/conv2d.cpp is (K x PQ)(PQ x CRS) = 6 x 25
// over a depth of 784 per image: a register tile of 12 x 32 holds a sixth of
// that useful work, and building and packing the 784 x 25 columns costs more
// than the arithmetic. Here a row of dy (Q outputs, in vector-wide blocks) meets
// the input row it sees through filter row r at each of the S column shifts:
// S vectors of running sums that stay in registers over all P rows, reduced to S
// numbers once per (k, c, r, block) and image.
//
// Layout of the scratch: x_n with its zero border and rows padded with zeros
// to Qv + S - 1 floats (Qv = Q rounded up to the vector width), and dy_n with rows padded
// with zeros to Qv, so every vector is read whole; the padding lanes
// multiply zeros (an inf or NaN in x reaching them gives NaN where the exact
// sum has inf: the gradient is not finite either way).
#include "kernels/cpu/conv2d_direct.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace scratchnet::kernels {

namespace {

// Floats per vector: one register of the widest kind the build targets
// (-march), so the forward's 12 accumulators fit AVX2's and SSE's 16
// registers, and no vector wider than the target's is passed by value.
#if defined(__AVX512F__)
constexpr int kBlock = 16;
#elif defined(__AVX__)
constexpr int kBlock = 8;
#else
constexpr int kBlock = 4;
#endif

int round_up(int v, int m) {
  return (v + m - 1) / m * m;
}

struct DirectScratch {
  std::vector<float> x, dy, w;
};
DirectScratch& direct_scratch() {
  thread_local DirectScratch s;
  return s;
}

// kBlock floats in GCC's generic vector type (one register); loads through
// memcpy are unaligned moves.
typedef float vec __attribute__((vector_size(kBlock * sizeof(float))));
inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// One filter row r of one (k, c): S sums over all P rows of the dy plane d
// (rows Qv apart) against the input plane xc (rows ld apart).
template <int S>
void filter_row(const float* d, const float* xc, int P, int Qv, long ld, int r, float* out) {
  vec acc[S] = {};
  for (int q0 = 0; q0 < Qv; q0 += kBlock)
    for (int p = 0; p < P; ++p) {
      const vec dv = load(d + static_cast<long>(p) * Qv + q0);
      const float* xr = xc + static_cast<long>(p + r) * ld + q0;
      for (int s = 0; s < S; ++s) acc[s] += dv * load(xr + s);
    }
  for (int s = 0; s < S; ++s) {
    float t = 0.0f;
    for (int j = 0; j < kBlock; ++j) t += acc[s][j];
    out[s] += t;
  }
}

// Planes (C, H, W) into dst (C, H + 2 pad_h, ld), at row pad_h and column
// pad_w of each plane; dst is zero elsewhere (set by the caller, once).
void pad_into(const float* src, int C, int H, int W, int pad_h, int pad_w, long ld, float* dst) {
  const long plane = (H + 2L * pad_h) * ld;
  for (int c = 0; c < C; ++c)
    for (int h = 0; h < H; ++h)
      std::copy_n(src + (static_cast<long>(c) * H + h) * W, W,
                  dst + c * plane + (h + pad_h) * ld + pad_w);
}

template <int S>
void images(const Conv2dParams& p, const float* x, const float* dy, int n0, int g, float* dw) {
  const int C = p.C, H = p.H, W = p.W, K = p.K, R = p.R, P = p.P, Q = p.Q, pad = p.pad;
  const int Qv = round_up(Q, kBlock);
  const long ld = Qv + S - 1, Hp = H + 2 * pad;
  DirectScratch& sc = direct_scratch();
  sc.x.assign(static_cast<std::size_t>(C) * Hp * ld, 0.0f);
  sc.dy.assign(static_cast<std::size_t>(K) * P * Qv, 0.0f);
  for (int n = n0; n < n0 + g; ++n) {
    pad_into(x + static_cast<long>(n) * C * H * W, C, H, W, pad, pad, ld, sc.x.data());
    const float* dyn = dy + static_cast<long>(n) * K * P * Q;
    for (int kp = 0; kp < K * P; ++kp)
      std::copy_n(dyn + static_cast<long>(kp) * Q, Q, sc.dy.data() + static_cast<long>(kp) * Qv);
    for (int k = 0; k < K; ++k)
      for (int c = 0; c < C; ++c)
        for (int r = 0; r < R; ++r)
          filter_row<S>(sc.dy.data() + static_cast<long>(k) * P * Qv,
                        sc.x.data() + c * Hp * ld, P, Qv, ld, r,
                        dw + ((static_cast<long>(k) * C + c) * R + r) * S);
  }
}


// --- forward and data gradient: a stride-1 correlation, 6 filters at a time

// Output channels per block: 6 accumulating vectors per row (2 rows: 12 of 16 AVX2
// registers), each filter tap one input load for 6 FMAs.
constexpr int kFilters = 6;

// w (K, C, R, S) as the blocks read it: [K / 6 rounded up][C][R][S][6],
// zeros past K. flip: the data gradient's filters, w'[c][k][r][s] =
// w[k][c][R-1-r][S-1-s] (K and C swap roles).
void pack_filters(const Conv2dParams& p, const float* w, bool flip, std::vector<float>& out) {
  const int K = flip ? p.C : p.K, C = flip ? p.K : p.C, R = p.R, S = p.S;
  const int blocks = (K + kFilters - 1) / kFilters;
  out.assign(static_cast<std::size_t>(blocks) * C * R * S * kFilters, 0.0f);
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < C; ++c)
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < S; ++s) {
          const long src = flip ? ((static_cast<long>(c) * p.C + k) * R + R - 1 - r) * S + S - 1 - s
                                : ((static_cast<long>(k) * C + c) * R + r) * S + s;
          const long dst = (((static_cast<long>(k / kFilters) * C + c) * R + r) * S + s) * kFilters;
          out[dst + k % kFilters] = w[src];
        }
}

// NR output rows from p of a block of 6 filters at columns [q0, q0 + kBlock):
// each tap loads NR input vectors and its 6 weights once for 6 NR FMAs.
template <int S, int NR>
void correlate_rows(const float* xs, int C, long ld, long plane, const float* wb, int R, int p,
                    int q0, vec (&acc)[NR][kFilters]) {
  for (int i = 0; i < NR; ++i)
    for (int f = 0; f < kFilters; ++f) acc[i][f] = vec{};
  const float* wk = wb;
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) {
      const float* xr = xs + c * plane + (p + r) * ld + q0;
      for (int s = 0; s < S; ++s, wk += kFilters) {
        vec xv[NR];
        for (int i = 0; i < NR; ++i) xv[i] = load(xr + i * ld + s);
        for (int f = 0; f < kFilters; ++f)
          for (int i = 0; i < NR; ++i) acc[i][f] += wk[f] * xv[i];
      }
    }
}

// y (K, P, Q) = (bias +) the correlation of the zero-padded planes xs
// (C, P + R - 1, ld), ld >= Q rounded up to kBlock + S - 1, with the packed
// filters; accumulate: y += instead.
template <int S>
void correlate(const float* xs, int C, long ld, const float* wp, int K, int R, int P, int Q,
               const float* bias, bool accumulate, float* y) {
  const int Qv = round_up(Q, kBlock);
  const long plane = (P + R - 1L) * ld;
  const auto store = [&](const vec& acc, int k, int p, int q0) {
    const int len = std::min(kBlock, Q - q0);
    float* out = y + (static_cast<long>(k) * P + p) * Q + q0;
    if (accumulate) {
      for (int j = 0; j < len; ++j) out[j] += acc[j];
    } else {
      const float b = bias ? bias[k] : 0.0f;
      for (int j = 0; j < len; ++j) out[j] = acc[j] + b;
    }
  };
  for (int k0 = 0; k0 < K; k0 += kFilters) {
    const float* wb = wp + static_cast<long>(k0 / kFilters) * C * R * S * kFilters;
    const int kn = std::min(kFilters, K - k0);
    for (int q0 = 0; q0 < Qv; q0 += kBlock) {
      int p = 0;
      for (; p + 2 <= P; p += 2) {
        vec acc[2][kFilters];
        correlate_rows<S, 2>(xs, C, ld, plane, wb, R, p, q0, acc);
        for (int f = 0; f < kn; ++f) {
          store(acc[0][f], k0 + f, p, q0);
          store(acc[1][f], k0 + f, p + 1, q0);
        }
      }
      if (p < P) {
        vec acc[1][kFilters];
        correlate_rows<S, 1>(xs, C, ld, plane, wb, R, p, q0, acc);
        for (int f = 0; f < kn; ++f) store(acc[0][f], k0 + f, p, q0);
      }
    }
  }
}

// Every image of the batch, threads over images: in_n (C, H, W) padded by
// (pad_h, pad_w) and correlated into out_n (K, P, Q).
void correlate_batch(int N, int C, int H, int W, int pad_h, int pad_w, const float* in,
                     const std::vector<float>& wp, int K, int R, int S, const float* bias,
                     bool accumulate, float* out) {
  const int P = H + 2 * pad_h - R + 1, Q = W + 2 * pad_w - S + 1;
  const long ld = round_up(Q, kBlock) + S - 1, Hp = H + 2L * pad_h;
  RegionErrors errors;
#pragma omp parallel
  {
    float* xs = nullptr;
    errors.run([&] {
      std::vector<float>& buf = direct_scratch().x;
      buf.assign(static_cast<std::size_t>(C) * Hp * ld, 0.0f);
      xs = buf.data();
    });
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      if (!xs) continue;
      pad_into(in + static_cast<long>(n) * C * H * W, C, H, W, pad_h, pad_w, ld, xs);
      float* on = out + static_cast<long>(n) * K * P * Q;
      if (S == 3)
        correlate<3>(xs, C, ld, wp.data(), K, R, P, Q, bias, accumulate, on);
      else
        correlate<5>(xs, C, ld, wp.data(), K, R, P, Q, bias, accumulate, on);
    }
  }
  errors.rethrow();
}

}  // namespace

bool conv2d_direct_applies(const Conv2dParams& p) {
  return p.stride == 1 && p.R == p.S && (p.S == 3 || p.S == 5) && p.pad < p.R;
}

// Measured, batch 256, one thread (loaded machine, min of 10), direct against
// im2col + GEMM: LeNet's conv1 (C 1, K 6, 5x5 pad 2, 28x28) forward 0.8 vs
// 2.0 ms, weight gradient 1.7 vs 9-14 ms, data gradient 3.1 vs 2.5; conv2
// (C 6, K 16, 5x5, 14x14) forward 1.6 vs 2.7, data gradient 2.1 vs 3.8,
// weight gradient 10 vs 7; C 16, K 12, 3x3 at 12x12 forward 0.37 vs 0.92,
// data 0.46 vs 1.5. VGG's first layer (C 1, K 64, 3x3, 224x224, batch 8):
// forward 94 vs 60, weight 120 vs 95; C 64, K 64 at 56x56: GEMM ahead
// throughout. So: the correlations where 4 to 16 channels come out (a 6-block
// mostly full, fewer than a GEMM tile's 12 rows could use) from a depth of at
// most 400; the weight gradient where the GEMM's tile would be mostly empty.
bool conv2d_direct_pays(const Conv2dParams& p, ConvPass pass) {
  if (!conv2d_direct_applies(p)) return false;
  const int taps = p.R * p.S;
  switch (pass) {
    case ConvPass::kForward:
      return p.K >= 4 && p.K <= 16 && p.C * taps <= 400;
    case ConvPass::kData:
      return p.C >= 4 && p.C <= 16 && p.K * taps <= 400;
    case ConvPass::kWeight:
      return p.K < 12 && p.C * taps < 32;
  }
  return false;
}

void conv2d_weight_direct(const Conv2dParams& p, const float* x, const float* dy, int n0, int g,
                          float* dw) {
  if (p.S == 3)
    images<3>(p, x, dy, n0, g, dw);
  else
    images<5>(p, x, dy, n0, g, dw);
}


void conv2d_forward_direct(const Conv2dParams& p, const float* x, const float* w, const float* b,
                           float* y) {
  std::vector<float>& wp = direct_scratch().w;
  pack_filters(p, w, false, wp);
  correlate_batch(p.N, p.C, p.H, p.W, p.pad, p.pad, x, wp, p.K, p.R, p.S, b, false, y);
}

void conv2d_backward_data_direct(const Conv2dParams& p, const float* dy, const float* w,
                                 float* dx) {
  std::vector<float>& wp = direct_scratch().w;
  pack_filters(p, w, true, wp);
  correlate_batch(p.N, p.K, p.P, p.Q, p.R - 1 - p.pad, p.S - 1 - p.pad, dy, wp, p.C, p.R, p.S,
                  nullptr, true, dx);
}

}  // namespace scratchnet::kernels
