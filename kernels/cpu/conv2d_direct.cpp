// The conv2d weight gradient without im2col, for stride 1 and few input
// channels (LeNet's first layer: C = 1, K = 6, 5x5 over 28x28):
//   dw[k, c, r, s] += Σ_n Σ_p Σ_q dy[n, k, p, q] x_pad[n, c, p + r, q + s]
// There the GEMM of kernels/cpu/conv2d.cpp is (K x PQ)(PQ x CRS) = 6 x 25
// over a depth of 784 per image: a register tile of 12 x 32 holds a sixth of
// that useful work, and building and packing the 784 x 25 columns costs more
// than the arithmetic. Here a row of dy (Q outputs, in 16-float blocks) meets
// the input row it sees through filter row r at each of the S column shifts:
// S x 16 running sums that stay in registers over all P rows, reduced to S
// numbers once per (k, c, r, block) and image.
//
// Layout of the scratch: x_n with its zero border and rows padded with zeros
// to Qv + S - 1 floats (Qv = Q rounded up to 16), and dy_n with rows padded
// with zeros to Qv, so every 16-float block is read whole; the padding lanes
// multiply zeros (an inf or NaN in x reaching them gives NaN where the exact
// sum has inf: the gradient is not finite either way).
#include "kernels/cpu/conv2d_direct.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace scratchnet::kernels {

namespace {

constexpr int kBlock = 16;

int round_up(int v, int m) {
  return (v + m - 1) / m * m;
}

struct DirectScratch {
  std::vector<float> x, dy;
};
DirectScratch& direct_scratch() {
  thread_local DirectScratch s;
  return s;
}

// 16 floats in GCC's generic vector type: one register with AVX-512, two or
// four elsewhere; loads and stores through memcpy are unaligned moves.
typedef float v16 __attribute__((vector_size(kBlock * sizeof(float))));
inline v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// One filter row r of one (k, c): S sums over all P rows of the dy plane d
// (rows Qv apart) against the input plane xc (rows ld apart).
template <int S>
void filter_row(const float* d, const float* xc, int P, int Qv, long ld, int r, float* out) {
  v16 acc[S] = {};
  for (int q0 = 0; q0 < Qv; q0 += kBlock)
    for (int p = 0; p < P; ++p) {
      const v16 dv = load(d + static_cast<long>(p) * Qv + q0);
      const float* xr = xc + static_cast<long>(p + r) * ld + q0;
      for (int s = 0; s < S; ++s) acc[s] += dv * load(xr + s);
    }
  for (int s = 0; s < S; ++s) {
    float t = 0.0f;
    for (int j = 0; j < kBlock; ++j) t += acc[s][j];
    out[s] += t;
  }
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
    const float* xn = x + static_cast<long>(n) * C * H * W;
    for (int c = 0; c < C; ++c)
      for (int h = 0; h < H; ++h)
        std::copy_n(xn + (static_cast<long>(c) * H + h) * W, W,
                    sc.x.data() + (c * Hp + h + pad) * ld + pad);
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

}  // namespace

// Measured (batch 256, one thread): LeNet's conv1 (C 1, K 6, 5x5, 28x28)
// 1.7 ms here against 9-14 ms by im2col + GEMM; its conv2 (C 6, K 16, 5x5,
// 14x14 -> 10x10) 10 ms against 7 ms, and VGG's first layer (C 1, K 64, 3x3,
// 224x224, batch 8) 120 ms against 95 ms: the GEMM wins once the filters
// fill a register tile's 12 rows or the columns C*R*S a 32-wide one.
bool conv2d_weight_direct_pays(const Conv2dParams& p) {
  return p.stride == 1 && (p.S == 3 || p.S == 5) && p.K < 12 && p.C * p.R * p.S < 32;
}

void conv2d_weight_direct(const Conv2dParams& p, const float* x, const float* dy, int n0, int g,
                          float* dw) {
  if (p.S == 3)
    images<3>(p, x, dy, n0, g, dw);
  else
    images<5>(p, x, dy, n0, g, dw);
}

}  // namespace scratchnet::kernels
