// CPU reference for max / average / global-average pooling.
// Layout NCHW; every (n, c) plane is independent, so OpenMP splits the N*C
// planes and each thread writes only its own planes of y / dx: backward
// scatters need no atomics and results do not depend on the thread count.
// Max pool: PyTorch semantics, padding acts as -inf (never wins), the first
// maximum in window order wins ties, and a NaN wins over numbers (as
// PyTorch's CPU kernel) so a NaN is propagated rather than hidden.
// Average pool: count_include_pad=True, divisor R*S; with ceil_mode=False no
// window reaches past the padding, so the divisor is the same everywhere.
// Its backward scatters (overlapping windows add into one pixel), so writing
// an uninitialised dx zeroes each plane first; the tiled path (each pixel in
// at most one window) writes its pixels and zeroes only those no window covers.
#include "kernels/pool2d.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace scratchnet::kernels {

namespace {

// Valid input rows [h0, h1) of the window starting at padded row `start`.
struct Range {
  int lo, hi;
};
inline Range clip(int start, int len, int size) {
  const int lo = start < 0 ? 0 : start;
  const int hi = start + len > size ? size : start + len;
  return {lo, hi};
}

}  // namespace

namespace {

// One output of max pooling, its window clipped to the input: the plain
// loops' arithmetic, shared by the fast path for the outputs it leaves.
inline void max_window(const Pool2dParams& p, const float* xp, int oh, int ow, float* y,
                       int32_t* a) {
  const Range rh = clip(oh * p.stride - p.pad, p.R, p.H);
  const Range rw = clip(ow * p.stride - p.pad, p.S, p.W);
  // pad <= kernel/2 guarantees a non-empty window (pool2d_params).
  int best_i = rh.lo * p.W + rw.lo;
  float best = -std::numeric_limits<float>::infinity();
  // Fast path: branch-free first maximum, noting whether a NaN went by
  // (folding the NaN rule into the select makes it several times slower).
  bool nan_seen = false;
  for (int h = rh.lo; h < rh.hi; ++h)
    for (int w = rw.lo; w < rw.hi; ++w) {
      const float v = xp[h * p.W + w];
      const bool take = v > best;
      best = take ? v : best;
      best_i = take ? h * p.W + w : best_i;
      nan_seen |= v != v;
    }
  if (nan_seen) {  // rare: the first NaN of the window wins
    for (int h = rh.lo; h < rh.hi && !std::isnan(best); ++h)
      for (int w = rw.lo; w < rw.hi; ++w)
        if (std::isnan(xp[h * p.W + w])) {
          best = xp[h * p.W + w];
          best_i = h * p.W + w;
          break;
        }
  }
  *y = best;
  *a = best_i;
}

// Outputs [q0, q0 + n) of row oh, n <= kRun, all with windows inside the
// input horizontally: the same first-maximum scan as max_window, but each
// window position (h, s) is one pass over the n outputs, which the compiler
// vectorises (STRIDE fixed, so the loads are plain or deinterleaving). A
// window that saw a NaN is redone by max_window.
constexpr int kRun = 64;
template <int STRIDE>
void max_row_run(const Pool2dParams& p, const float* xp, int oh, int q0, int n, float* yrow,
                 int32_t* arow) {
  const int stride = STRIDE > 0 ? STRIDE : p.stride;
  const Range rh = clip(oh * p.stride - p.pad, p.R, p.H);
  float best[kRun];
  int32_t best_i[kRun];
  int nan_seen[kRun];
  const int w0 = q0 * stride - p.pad;  // first window's left column, >= 0
  for (int j = 0; j < n; ++j) {
    best[j] = -std::numeric_limits<float>::infinity();
    best_i[j] = rh.lo * p.W + w0 + j * stride;
    nan_seen[j] = 0;
  }
  for (int h = rh.lo; h < rh.hi; ++h)
    for (int s = 0; s < p.S; ++s) {
      const float* row = xp + h * p.W + w0 + s;
      const int32_t at = h * p.W + w0 + s;
#pragma omp simd
      for (int j = 0; j < n; ++j) {
        const float v = row[j * stride];
        const bool take = v > best[j];
        best[j] = take ? v : best[j];
        best_i[j] = take ? at + j * stride : best_i[j];
        nan_seen[j] |= v != v;
      }
    }
  for (int j = 0; j < n; ++j) {
    if (nan_seen[j]) {
      max_window(p, xp, oh, q0 + j, yrow + q0 + j, arow + q0 + j);
    } else {
      yrow[q0 + j] = best[j];
      arow[q0 + j] = best_i[j];
    }
  }
}

// fast: in rows of at least 16 outputs, those whose windows lie inside the
// input horizontally go in runs through max_row_run, the few at the edges
// through max_window; else (the plain loops, the tests' oracle) every output
// through max_window. Both give the same bits (tests/test_pool.cpp); the
// fast path is about 2x faster on ResNet's and AlexNet's first 3x3 stride-2
// pools (bench --mode kernels, batch 256: 485-523 -> 187-255 ms, 184-244 ->
// 78-95 ms). Short rows (AlexNet's 12- and 5-wide outputs) run faster in the
// plain loops: a pass per window position costs more than it saves there.
void max_pool_forward(const Pool2dParams& p, const float* x, float* y, int32_t* argmax,
                      bool fast) {
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.P) * p.Q;
  // Outputs [lo, hi) of a row have windows within columns [0, W).
  const int lo = std::min(p.Q, (p.pad + p.stride - 1) / p.stride);
  int hi = lo;
  while (hi < p.Q && hi * p.stride - p.pad + p.S <= p.W) ++hi;
  if (!fast || hi - lo < 16) hi = lo;
#pragma omp parallel for schedule(static)
  for (int nc = 0; nc < planes; ++nc) {
    const float* xp = x + nc * in_plane;
    float* yp = y + nc * out_plane;
    int32_t* ap = argmax + nc * out_plane;
    for (int oh = 0; oh < p.P; ++oh) {
      float* yrow = yp + oh * p.Q;
      int32_t* arow = ap + oh * p.Q;
      for (int ow = 0; ow < lo; ++ow) max_window(p, xp, oh, ow, yrow + ow, arow + ow);
      for (int q0 = lo; q0 < hi; q0 += kRun) {
        const int n = std::min(kRun, hi - q0);
        if (p.stride == 1)
          max_row_run<1>(p, xp, oh, q0, n, yrow, arow);
        else if (p.stride == 2)
          max_row_run<2>(p, xp, oh, q0, n, yrow, arow);
        else
          max_row_run<0>(p, xp, oh, q0, n, yrow, arow);
      }
      for (int ow = hi; ow < p.Q; ++ow) max_window(p, xp, oh, ow, yrow + ow, arow + ow);
    }
  }
}

}  // namespace

void max_pool2d_forward_cpu_plain(const Pool2dParams& p, const float* x, float* y,
                                  int32_t* argmax) {
  max_pool_forward(p, x, y, argmax, false);
}

void max_pool2d_forward_cpu(const Pool2dParams& p, const float* x, float* y, int32_t* argmax) {
  max_pool_forward(p, x, y, argmax, true);
}

void max_pool2d_backward_cpu(const Pool2dParams& p, const float* dy, const int32_t* argmax,
                             float* dx) {
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.P) * p.Q;
#pragma omp parallel for schedule(static)
  for (int nc = 0; nc < planes; ++nc) {
    const float* dyp = dy + nc * out_plane;
    const int32_t* ap = argmax + nc * out_plane;
    float* dxp = dx + nc * in_plane;
    for (int64_t i = 0; i < out_plane; ++i) dxp[ap[i]] += dyp[i];
  }
}

void avg_pool2d_forward_cpu_plain(const Pool2dParams& p, const float* x, float* y) {
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.P) * p.Q;
  const float inv = 1.0f / static_cast<float>(p.R * p.S);
#pragma omp parallel for schedule(static)
  for (int nc = 0; nc < planes; ++nc) {
    const float* xp = x + nc * in_plane;
    float* yp = y + nc * out_plane;
    for (int oh = 0; oh < p.P; ++oh) {
      const Range rh = clip(oh * p.stride - p.pad, p.R, p.H);
      for (int ow = 0; ow < p.Q; ++ow) {
        const Range rw = clip(ow * p.stride - p.pad, p.S, p.W);
        float s = 0.0f;
        for (int h = rh.lo; h < rh.hi; ++h)
          for (int w = rw.lo; w < rw.hi; ++w) s += xp[h * p.W + w];
        yp[oh * p.Q + ow] = s * inv;
      }
    }
  }
}

void avg_pool2d_backward_cpu_plain(const Pool2dParams& p, const float* dy, float* dx,
                                   bool write) {
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.P) * p.Q;
  const float inv = 1.0f / static_cast<float>(p.R * p.S);
#pragma omp parallel for schedule(static)
  for (int nc = 0; nc < planes; ++nc) {
    const float* dyp = dy + nc * out_plane;
    float* dxp = dx + nc * in_plane;
    if (write) std::fill(dxp, dxp + in_plane, 0.0f);
    for (int oh = 0; oh < p.P; ++oh) {
      const Range rh = clip(oh * p.stride - p.pad, p.R, p.H);
      for (int ow = 0; ow < p.Q; ++ow) {
        const Range rw = clip(ow * p.stride - p.pad, p.S, p.W);
        const float g = dyp[oh * p.Q + ow] * inv;
        for (int h = rh.lo; h < rh.hi; ++h)
          for (int w = rw.lo; w < rw.hi; ++w) dxp[h * p.W + w] += g;
      }
    }
  }
}

namespace {

// Non-overlapping windows without padding (R = S = stride, pad = 0: LeNet's
// 2x2, stride 2): every window lies inside the input and every input pixel
// is in at most one window, so no clipping, no per-element index arithmetic,
// and the 2x2 case reads two input rows per output row. Sums add a window
// in the plain loops' order (rows, then columns, from 0.0f) and each dx
// pixel gets its one term, so results are bit-identical to the plain loops.
bool tiles_exactly(const Pool2dParams& p) {
  return p.R == p.S && p.R == p.stride && p.pad == 0;
}

// row(i, o) for every output row of every plane, the planes split over the
// threads: i is the offset of the row's first input row in x (and dx), o of
// the output row in y (and dy).
template <typename F>
void for_each_output_row(const Pool2dParams& p, F row) {
  const int planes = p.N * p.C;
  const int64_t in_plane = static_cast<int64_t>(p.H) * p.W;
  const int64_t out_plane = static_cast<int64_t>(p.P) * p.Q;
#pragma omp parallel for schedule(static)
  for (int nc = 0; nc < planes; ++nc)
    for (int oh = 0; oh < p.P; ++oh)
      row(nc * in_plane + static_cast<int64_t>(oh) * p.R * p.W, nc * out_plane + oh * p.Q);
}

void avg_pool2d_forward_tiled(const Pool2dParams& p, const float* x, float* y) {
  const int W = p.W, Q = p.Q, R = p.R;
  const float inv = 1.0f / static_cast<float>(R * R);
  for_each_output_row(p, [&](int64_t i, int64_t o) {
    const float* __restrict in = x + i;
    float* __restrict out = y + o;
    if (R == 2) {
      const float* __restrict in1 = in + W;
      for (int ow = 0; ow < Q; ++ow)
        out[ow] = (0.0f + in[2 * ow] + in[2 * ow + 1] + in1[2 * ow] + in1[2 * ow + 1]) * inv;
      return;
    }
    for (int ow = 0; ow < Q; ++ow) {
      float s = 0.0f;
      for (int h = 0; h < R; ++h)
        for (int w = 0; w < R; ++w) s += in[h * W + ow * R + w];
      out[ow] = s * inv;
    }
  });
}

// Write: = instead of += (the one term of each covered pixel); the columns
// right of the last window and the rows below it (W, H not multiples of R)
// are set to 0.
template <bool Write>
void avg_pool2d_backward_tiled(const Pool2dParams& p, const float* dy, float* dx) {
  const int W = p.W, Q = p.Q, R = p.R;
  const float inv = 1.0f / static_cast<float>(R * R);
  for_each_output_row(p, [&](int64_t i, int64_t o) {
    // Each of the window's R input rows gets every output's share.
    for (int h = 0; h < R; ++h) {
      const float* __restrict g = dy + o;
      float* __restrict out = dx + i + static_cast<int64_t>(h) * W;
      if (R == 2) {  // a constant window width: vectorised
        for (int ow = 0; ow < Q; ++ow) {
          const float v = g[ow] * inv;
          if (Write) {
            out[2 * ow] = v;
            out[2 * ow + 1] = v;
          } else {
            out[2 * ow] += v;
            out[2 * ow + 1] += v;
          }
        }
      } else {
        for (int ow = 0; ow < Q; ++ow) {
          const float v = g[ow] * inv;
          for (int w = 0; w < R; ++w) {
            if (Write)
              out[ow * R + w] = v;
            else
              out[ow * R + w] += v;
          }
        }
      }
      if (Write) std::fill(out + Q * R, out + W, 0.0f);
    }
  });
  if (Write && p.P * R < p.H) {
    const int64_t in_plane = static_cast<int64_t>(p.H) * W, covered = int64_t{p.P} * R * W;
    const int planes = p.N * p.C;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < planes; ++nc)
      std::fill(dx + nc * in_plane + covered, dx + (nc + 1) * in_plane, 0.0f);
  }
}

}  // namespace

void avg_pool2d_forward_cpu(const Pool2dParams& p, const float* x, float* y) {
  if (tiles_exactly(p)) return avg_pool2d_forward_tiled(p, x, y);
  avg_pool2d_forward_cpu_plain(p, x, y);
}

void avg_pool2d_backward_cpu(const Pool2dParams& p, const float* dy, float* dx, bool write) {
  if (tiles_exactly(p)) {
    if (write) return avg_pool2d_backward_tiled<true>(p, dy, dx);
    return avg_pool2d_backward_tiled<false>(p, dy, dx);
  }
  avg_pool2d_backward_cpu_plain(p, dy, dx, write);
}

void global_avg_pool_forward_cpu(int planes, int hw, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i) {
    const float* xp = x + static_cast<int64_t>(i) * hw;
    double s = 0.0;  // double: a 7x7 or larger plane sums without visible rounding
    for (int j = 0; j < hw; ++j) s += xp[j];
    y[i] = static_cast<float>(s / hw);
  }
}

void global_avg_pool_backward_cpu(int planes, int hw, const float* dy, float* dx, bool write) {
  const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < planes; ++i) {
    float* dxp = dx + static_cast<int64_t>(i) * hw;
    const float g = dy[i] * inv;
    if (write)
      std::fill(dxp, dxp + hw, g);
    else
      for (int j = 0; j < hw; ++j) dxp[j] += g;
  }
}

}  // namespace scratchnet::kernels
