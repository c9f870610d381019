// 2-D convolution on the CPU (cross-correlation, as PyTorch), by im2col + GEMM.
//
// Layouts: x (N, C, H, W), w (K, C, R, S) = a K x CRS matrix, b (K),
// y (N, K, P, Q). Per image, the columns matrix col (CRS, PQ) holds in row
// (c, r, s) the input pixel each output position sees through filter tap
// (c, r, s), zero where the window hangs over the padding. Then
//   forward          y_n  = w · col_n                 (K x CRS)(CRS x PQ)
//   backward data    dx_n += col2im(wᵀ · dy_n)         (CRS x K)(K x PQ)
//   backward weight  dw  += Σ_n dy_n · col_nᵀ          (K x PQ)(PQ x CRS)
//                    db  += Σ_n Σ_pq dy_n
// A 1x1 filter with stride 1 and no padding needs no columns: col_n is x_n.
//
// Groups of images: with small output maps (ResNet's 6x6 and 3x3 at 96 px)
// one image's GEMM has 36 or 9 columns, less than one 32-wide register tile,
// and the whole weight matrix is packed (forward, data gradient) or dw read
// and written (weight gradient) for that handful of columns: the copies cost
// more than the arithmetic. So the unit of work is a group of G images whose
// columns lie side by side, col (CRS, G*PQ), with G chosen for about
// kGroupColumns columns; the forward writes its (K, G*PQ) product to scratch
// and scatters it to y, and the gradients gather dy the same way. G = 1 (the
// plain per-image GEMMs) wherever PQ is large enough.
//
// The weights are packed for the GEMM once per call (kernels/gemm.h,
// gemm_cpu_pack_a), not once per image or group as a plain gemm_cpu call
// would: on 3x3 maps that re-packing, 9 MiB of w per group, cost about as
// much as the group's arithmetic.
//
// Threading: with enough groups for every thread, the groups are the
// parallel loop (each thread builds its group's columns in its own scratch
// and runs serial GEMMs; the weight gradient goes to per-thread partial sums
// added up at the end, in a fixed order, so results do not depend on timing).
// With fewer (inference on one picture) the groups run in turn and each
// GEMM spreads over the threads instead. Scratch buffers are thread_local and
// grow to the largest layer seen, so a training step allocates nothing.
//
// Stride-1 layers never build the columns matrix: the GEMM packs its
// micro-panels straight from the padded images (implicit im2col, see
// pack_columns below), and their data gradient runs as a forward
// convolution of dy with flipped filters (flipped_forward), so no col2im
// either. Strided layers build col and scatter with col2im. Small maps
// whose padding is a large share of im2col's products (ResNet's 3x3 and 6x6
// maps) are summed tap by tap instead, skipping the padding (tap GEMMs,
// below). Stride-1 layers
// with few channels (LeNet's) skip im2col and GEMM where that measured
// faster: kernels/cpu/conv2d_direct.cpp.
#include "kernels/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "kernels/cpu/conv2d_direct.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace scratchnet::kernels {

namespace {

struct Scratch {
  std::vector<float> col;      // CRS x G*PQ columns of a group (or their transpose)
  std::vector<float> padded;   // one image with its zero border
  std::vector<float> partial;  // this thread's share of dw (K x CRS) then db (K)
  std::vector<float> kpq;      // K x G*PQ: a group's y before its scatter, or its dy
  std::vector<float> wpack;    // w (or wᵀ) packed for the GEMM, by the calling thread
  std::vector<float> wflip;    // w transposed and flipped (C, K, R, S): see flipped_forward
  std::vector<float> wtap;     // w tap by tap, (R*S, K, C): see pack_weights_taps
  std::vector<float> tap;      // one tap's product (K, its positions) or its share of dy
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}
float* grow(std::vector<float>& v, std::size_t n) {
  if (v.size() < n) {
    try {
      v.resize(n);
    } catch (const std::bad_alloc&) {
      throw OutOfMemoryError("conv2d (CPU): cannot allocate " +
                                 std::to_string(n * sizeof(float) >> 20) +
                                 " MiB of im2col scratch; use a smaller batch or image size",
                             n * sizeof(float), v.size() * sizeof(float));
    }
  }
  return v.data();
}

bool is_pointwise(const Conv2dParams& p) {
  return p.R == 1 && p.S == 1 && p.stride == 1 && p.pad == 0;
}

// Columns a group of images aims for: a few 32-wide register tiles per
// packed weight panel, and a weight-gradient depth long enough that dw's
// loads and stores are a small part of each micro-kernel call.
constexpr int kGroupColumns = 256;
int g_group_cap = 0;    // tests only: conv2d_cpu_cap_group_images_for_testing
int g_path = 0;         // tests only: conv2d_cpu_path_for_testing

// Tap GEMMs (below) where the padding is at least this share of the im2col
// products and the per-tap reduction (C) is long enough to keep the
// micro-kernel busy between the loads and stores of its output tile.
constexpr double kTapMinPaddingShare = 0.15;
constexpr int kTapMinChannels = 128;
// Columns a group of images aims for on the tap GEMMs' forward: a tap sees
// only part of each map, so twice kGroupColumns.
constexpr int kTapGroupColumns = 512;

// How the batch is cut: `group` images per GEMM (the last group may be
// short), `groups` groups, `threads` for the loop over the groups.
struct Plan {
  int group, groups, threads;
};

// Threads for the group loop: all of them when the groups share out evenly
// enough (a whole number each, or several each so the last round matters
// little), else 1, and the GEMMs inside parallelise themselves.
Plan plan(const Conv2dParams& p, int columns = kGroupColumns) {
  const int t = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int pq = p.P * p.Q;
  int g = 1;
  if (!is_pointwise(p) && pq < columns) {
    g = std::min(p.N, (columns + pq - 1) / pq);
    // As many groups as a multiple of the threads, so that none idles.
    int groups = (p.N + g - 1) / g;
    groups = std::min(p.N, (groups + t - 1) / t * t);
    g = (p.N + groups - 1) / groups;
  }
  if (g_group_cap > 0) g = std::min(g, g_group_cap);
  const int groups = (p.N + g - 1) / g;
  const int threads = t > 1 && (groups % t == 0 || groups >= 4 * t) ? t : 1;
  return {g, groups, threads};
}

// The output columns [lo, hi) whose input column ow*stride - pad + s lies in
// [0, W): everything outside reads padding.
struct Span {
  int lo, hi;
};
Span valid_outputs(int pad, int tap, int stride, int in_size, int out_size) {
  const int first = pad - tap;          // ow*stride >= first
  const int end = in_size + pad - tap;  // ow*stride <  end
  const int lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int hi = end <= 0 ? 0 : (end + stride - 1) / stride;
  return {std::min(lo, out_size), std::min(hi, out_size)};
}

// Slack after the scratch buffers below, so that short rows can be copied in
// whole vectors (see im2col_transposed).
constexpr int kSlack = 16;

// x_n with a border of pad zeros, (C, H + 2 pad, W + 2 pad), in scratch with
// kSlack floats to spare: every filter tap then reads real memory and the
// gathers below need no bounds tests. Without padding and slack x_n serves.
const float* padded(const Conv2dParams& p, const float* xn, bool need_slack) {
  if (p.pad == 0 && !need_slack) return xn;
  const int Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  const long size = static_cast<long>(p.C) * Hp * Wp + kSlack;
  float* xp = grow(scratch().padded, size);
  if (p.pad > 0) std::fill(xp, xp + size, 0.0f);
  for (int c = 0; c < p.C; ++c)
    for (int h = 0; h < p.H; ++h)
      std::copy_n(xn + (static_cast<long>(c) * p.H + h) * p.W, p.W,
                  xp + (static_cast<long>(c) * Hp + h + p.pad) * Wp + p.pad);
  return xp;
}

// Sums of the rows of m (rows x len) added to out; 16 independent partial sums
// so the compiler can vectorise without reassociating one long chain.
void add_row_sums(const float* m, int rows, int len, float* out) {
  for (int k = 0; k < rows; ++k) {
    const float* row = m + static_cast<long>(k) * len;
    float part[16] = {};
    int i = 0;
    for (; i + 16 <= len; i += 16)
      for (int j = 0; j < 16; ++j) part[j] += row[i + j];
    float s = 0.0f;
    for (; i < len; ++i) s += row[i];
    for (float v : part) s += v;
    out[k] += s;
  }
}

// col (CRS, PQ) from one image x (C, H, W), rows ld apart: row (c, r, s) is
// the input seen through tap (c, r, s) at every output position.
void im2col(const Conv2dParams& p, const float* x, float* col, long ld) {
  const float* xp = padded(p, x, false);
  const int Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  // The shape in locals and restrict pointers: the compiler then keeps the
  // loop bounds in registers and copies without a run-time overlap check
  // (with maps of 3 to 12 columns that check and the scalar fallback it
  // guards were most of the time).
  const int C = p.C, R = p.R, S = p.S, P = p.P, Q = p.Q, st = p.stride;
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) {
        float* __restrict out = col + ((static_cast<long>(c) * R + r) * S + s) * ld;
        const float* __restrict in = xp + (static_cast<long>(c) * Hp + r) * Wp + s;
        if (st == 1) {
          for (int oh = 0; oh < P; ++oh, out += Q, in += Wp)
            for (int ow = 0; ow < Q; ++ow) out[ow] = in[ow];
        } else {
          for (int oh = 0; oh < P; ++oh, out += Q, in += static_cast<long>(st) * Wp)
            for (int ow = 0; ow < Q; ++ow) out[ow] = in[ow * st];
        }
      }
}

// colᵀ (PQ, CRS) from one image: the weight gradient's GEMM then reads it
// row-major without a transposing copy (which costs more than the GEMM itself
// at LeNet's sizes). Each output position copies its receptive field.
void im2col_transposed(const Conv2dParams& p, const float* x, float* colt) {
  const float* xp = padded(p, x, true);
  const int Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  const int C = p.C, R = p.R, S = p.S, P = p.P, Q = p.Q, st = p.stride;
  const long plane = static_cast<long>(Hp) * Wp;
  float* __restrict out = colt;
  for (int oh = 0; oh < P; ++oh)
    for (int ow = 0; ow < Q; ++ow) {
      const float* window = xp + static_cast<long>(oh) * st * Wp + static_cast<long>(ow) * st;
      if (S <= 8) {
        // Filter rows of up to 8 taps (3x3, 5x5, 7x7) move as one 8-float
        // copy: the surplus lands where the next row is about to be written,
        // or in the slack of colt, and the source over-read stays inside
        // xp's slack.
        for (int c = 0; c < C; ++c) {
          const float* in = window + c * plane;
          for (int r = 0; r < R; ++r, out += S, in += Wp) std::memcpy(out, in, 8 * sizeof(float));
        }
      } else {
        for (int c = 0; c < C; ++c) {
          const float* in = window + c * plane;
          for (int r = 0; r < R; ++r, out += S, in += Wp)
            for (int s = 0; s < S; ++s) out[s] = in[s];
        }
      }
    }
}

// dx (C, H, W) += the columns col (CRS, PQ), rows ld apart, scattered back to
// their pixels.
void col2im(const Conv2dParams& p, const float* col, long ld, float* dx) {
  const int C = p.C, R = p.R, S = p.S, P = p.P, Q = p.Q, H = p.H, W = p.W, st = p.stride;
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) {
        const float* row = col + ((static_cast<long>(c) * R + r) * S + s) * ld;
        const Span q = valid_outputs(p.pad, s, st, W, Q);
        const int off = s - p.pad;
        for (int oh = 0; oh < P; ++oh) {
          const int ih = oh * st - p.pad + r;
          if (ih < 0 || ih >= H) continue;
          const float* __restrict in = row + static_cast<long>(oh) * Q;
          float* __restrict out = dx + (static_cast<long>(c) * H + ih) * W;
          if (st == 1) {  // contiguous: lets the compiler vectorise
            for (int ow = q.lo; ow < q.hi; ++ow) out[ow + off] += in[ow];
          } else {
            for (int ow = q.lo; ow < q.hi; ++ow) out[ow * st + off] += in[ow];
          }
        }
      }
}

// dy of images [n0, n0+g) side by side, (K, g*PQ): the layout of a group's
// GEMM. With one image that is dy_n itself.
const float* gather_dy(const Conv2dParams& p, const float* dy, int n0, int g) {
  const long PQ = static_cast<long>(p.P) * p.Q;
  const float* first = dy + static_cast<long>(n0) * p.K * PQ;
  if (g == 1) return first;
  float* out = grow(scratch().kpq, static_cast<std::size_t>(p.K) * g * PQ);
  for (int i = 0; i < g; ++i)
    for (int k = 0; k < p.K; ++k)
      std::copy_n(first + (static_cast<long>(i) * p.K + k) * PQ, PQ, out + (k * g + i) * PQ);
  return out;
}

// --- Implicit im2col: the forward GEMM's B packed straight from the images.
//
// With stride 1, column j of the group's columns (image i, output (oh, ow))
// and row k (tap c, r, s) is xp_i[c][oh + r][ow + s] of the zero-padded
// image: a row offset that depends only on k plus a column offset that
// depends only on j, and columns in the same output row are neighbours in
// memory. So a micro-panel of nr columns is a few runs of consecutive
// floats (one per output row it touches), copied for each of its kc rows
// straight into the GEMM's packed layout (GemmBSource). The columns matrix,
// CRS x PQ floats per image (1.3 MiB on ResNet's 64-channel layers, 4.7 MiB
// for a group of its 3x3 maps), is never written and read back: written
// whole it had left L2 by the time the GEMM packed it.

// What pack_columns reads: the group's images zero-padded (or x itself
// without padding), `image` floats apart.
struct ImplicitColumns {
  const float* xp;
  int R, S, Wp, Q;
  long plane, image, PQ;
};

// The widest micro-panel pack_columns serves (the GEMM variants' nr is 32 at most).
constexpr int kMaxPanel = 64;

// n <= kMaxPanel floats from src to dst, in whole vectors where it can.
// Straight-line code, no loop: GCC turns a loop of copies into a call to
// memmove, which costs more than these copies of a few dozen floats.
inline void copy_run(const float* __restrict src, float* __restrict dst, int n) {
  static_assert(kMaxPanel <= 64, "copy_run copies at most 64 floats");
  int t = 0;
  for (int half = 0; half < 2; ++half)
    if (t + 32 <= n) {
      std::memcpy(dst + t, src + t, 32 * sizeof(float));
      t += 32;
    }
  if (t + 16 <= n) {
    std::memcpy(dst + t, src + t, 16 * sizeof(float));
    t += 16;
  }
  if (t + 8 <= n) {
    std::memcpy(dst + t, src + t, 8 * sizeof(float));
    t += 8;
  }
  if (t + 4 <= n) {
    std::memcpy(dst + t, src + t, 4 * sizeof(float));
    t += 4;
  }
  if (t + 2 <= n) {
    std::memcpy(dst + t, src + t, 2 * sizeof(float));
    t += 2;
  }
  if (t < n) dst[t] = src[t];
}

// n floats from src to dst: copy_run for short runs, else std::copy_n.
inline void copy_floats(const float* src, float* dst, long n) {
  if (n <= kMaxPanel)
    copy_run(src, dst, static_cast<int>(n));
  else
    std::copy_n(src, n, dst);
}

// GemmBSource::pack for ImplicitColumns.
void pack_columns(const void* ctx, int k0, int kc, int j0, int nc, int nr, float* dst) {
  const ImplicitColumns& m = *static_cast<const ImplicitColumns*>(ctx);
  require(nr <= kMaxPanel, "conv2d", "implicit im2col: micro-panels wider than kMaxPanel");
  // Where tap k0 + k starts in a padded image.
  thread_local std::vector<long> row_offset;
  row_offset.resize(static_cast<std::size_t>(kc));
  const int RS = m.R * m.S;
  for (int k = 0; k < kc; ++k) {
    const int crs = k0 + k, c = crs / RS, rs = crs % RS;
    row_offset[k] = c * m.plane + static_cast<long>(rs / m.S) * m.Wp + rs % m.S;
  }
  struct Run {
    int lane, len;
    long offset;  // of the run's first column in the padded images
  };
  Run runs[kMaxPanel];
  for (int jp = 0; jp < nc; jp += nr) {
    const int lanes = std::min(nr, nc - jp);
    int n = 0;
    for (int j = 0; j < lanes;) {
      const long col = static_cast<long>(j0) + jp + j, img = col / m.PQ;
      const int pq = static_cast<int>(col - img * m.PQ), oh = pq / m.Q, ow = pq - oh * m.Q;
      const int len = std::min(lanes - j, m.Q - ow);
      runs[n++] = {j, len, img * m.image + static_cast<long>(oh) * m.Wp + ow};
      j += len;
    }
    // Run by run down the panel's rows: within a run the copy length is
    // fixed, so its branches are predicted.
    float* panel = dst + static_cast<long>(jp) * kc;
    for (int i = 0; i < n; ++i) {
      const float* src = m.xp + runs[i].offset;
      float* d = panel + runs[i].lane;
      const int len = runs[i].len;
      for (int k = 0; k < kc; ++k) copy_run(src + row_offset[k], d + static_cast<long>(k) * nr, len);
    }
    if (lanes < nr)
      for (int k = 0; k < kc; ++k)
        std::fill(panel + static_cast<long>(k) * nr + lanes, panel + (k + 1L) * nr, 0.0f);
  }
}

bool implicit_columns_apply(const Conv2dParams& p) {
  return p.stride == 1 && !is_pointwise(p) && g_path != 1;
}

// Images [n0, n0+g) with their zero borders, one after another, and the
// distance between them; x itself without padding, unless need_slack asks
// for a copy with kSlack floats after the last image to over-read.
const float* padded_group(const Conv2dParams& p, const float* x, int n0, int g, long* image,
                          bool need_slack = false) {
  const long src_image = static_cast<long>(p.C) * p.H * p.W;
  if (p.pad == 0 && !need_slack) {
    *image = src_image;
    return x + n0 * src_image;
  }
  const int Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  *image = static_cast<long>(p.C) * Hp * Wp;
  const long size = g * *image + kSlack;
  float* xp = grow(scratch().padded, static_cast<std::size_t>(size));
  // Every float written once: the border rows and columns zeroed, the rest
  // copied (zeroing the whole buffer first, then copying, wrote it twice).
  const int pad = p.pad, W = p.W;
  const float* src = x + n0 * src_image;
  float* dst = xp;
  for (int plane = 0; plane < g * p.C; ++plane) {
    std::fill_n(dst, static_cast<long>(pad) * Wp, 0.0f);
    dst += static_cast<long>(pad) * Wp;
    for (int h = 0; h < p.H; ++h, src += W, dst += Wp) {
      for (int j = 0; j < pad; ++j) dst[j] = dst[pad + W + j] = 0.0f;
      copy_floats(src, dst + pad, W);
    }
    std::fill_n(dst, static_cast<long>(pad) * Wp, 0.0f);
    dst += static_cast<long>(pad) * Wp;
  }
  std::fill_n(dst, kSlack, 0.0f);
  return xp;
}

// The weight gradient's B is the transposed columns, colᵀ (g*PQ, CRS): row
// k is output position k of the group, column j is tap (c, r, s), and the
// value xp_i[c][oh*stride + r][ow*stride + s] is again a column offset plus
// a row offset, now with the roles swapped: along a panel row the taps of
// one filter row (s = 0..S-1) are neighbours in memory, a run of S floats.
struct ImplicitColumnsT {
  const float* xp;  // padded images with kSlack floats to spare
  int R, S, Wp, Q, stride;
  long plane, image, PQ;
};

// GemmBSource::pack for ImplicitColumnsT.
void pack_columns_t(const void* ctx, int k0, int kc, int j0, int nc, int nr, float* dst) {
  const ImplicitColumnsT& m = *static_cast<const ImplicitColumnsT*>(ctx);
  require(nr <= kMaxPanel, "conv2d", "implicit im2col: micro-panels wider than kMaxPanel");
  // Where output position k0 + k starts in the padded images.
  thread_local std::vector<long> position;
  position.resize(static_cast<std::size_t>(kc));
  for (int k = 0; k < kc; ++k) {
    const long col = static_cast<long>(k0) + k, img = col / m.PQ;
    const int pq = static_cast<int>(col - img * m.PQ), oh = pq / m.Q, ow = pq - oh * m.Q;
    position[k] = img * m.image + static_cast<long>(oh) * m.stride * m.Wp + ow * m.stride;
  }
  struct Run {
    int lane, len;
    long offset;  // of tap (c, r, s0) from an output position's window
  };
  Run runs[kMaxPanel];
  const int RS = m.R * m.S;
  const long total = static_cast<long>(nc) * kc;  // floats this call writes, before zero lanes
  for (int jp = 0; jp < nc; jp += nr) {
    const int lanes = std::min(nr, nc - jp);
    int n = 0;
    for (int j = 0; j < lanes;) {
      const int crs = j0 + jp + j, c = crs / RS, rs = crs % RS, r = rs / m.S, s0 = rs % m.S;
      const int len = std::min(lanes - j, m.S - s0);
      runs[n++] = {j, len, c * m.plane + static_cast<long>(r) * m.Wp + s0};
      j += len;
    }
    float* panel = dst + static_cast<long>(jp) * kc;
    for (int k = 0; k < kc; ++k) {
      float* d = panel + static_cast<long>(k) * nr;
      const float* window = m.xp + position[k];
      // With filter rows of up to 8 taps each run moves as one 8-float copy:
      // the surplus lands on lanes the next run (or the next row, or the
      // zero fill) writes afterwards, and the source over-read stays inside
      // the images' slack. Only the very end of dst must not be overrun.
      const bool wide = m.S <= 8 && static_cast<long>(jp) * kc + (k + 1L) * nr + 8 <= total;
      for (int i = 0; i < n; ++i) {
        if (wide)
          std::memcpy(d + runs[i].lane, window + runs[i].offset, 8 * sizeof(float));
        else
          copy_run(window + runs[i].offset, d + runs[i].lane, runs[i].len);
      }
      for (int j = lanes; j < nr; ++j) d[j] = 0.0f;
    }
  }
}

// One image's y (K, PQ) at yn += the bias b (K).
void add_bias(const Conv2dParams& p, const float* b, float* yn) {
  const long PQ = static_cast<long>(p.P) * p.Q;
  for (int k = 0; k < p.K; ++k) {
    float* row = yn + k * PQ;
    for (long i = 0; i < PQ; ++i) row[i] += b[k];
  }
}

// A group's product out (K, g*PQ) to y's images from yn on: y = out + b, or
// y += out with `accumulate`.
void store_group(const Conv2dParams& p, const float* out, const float* b, float* yn, int g,
                 bool accumulate) {
  const long PQ = static_cast<long>(p.P) * p.Q, ld = g * PQ;
  for (int i = 0; i < g; ++i)
    for (int k = 0; k < p.K; ++k) {
      const float* __restrict src = out + k * ld + i * PQ;
      float* __restrict dst = yn + (static_cast<long>(i) * p.K + k) * PQ;
      const float bk = b ? b[k] : 0.0f;
      if (accumulate) {
        for (long j = 0; j < PQ; ++j) dst[j] += src[j];
      } else {
        for (long j = 0; j < PQ; ++j) dst[j] = src[j] + bk;
      }
    }
}

// y for images [n0, n0+g): one GEMM over the group's columns; with
// `accumulate`, y += instead of y = (b must then be null).
void forward_group(const Conv2dParams& p, const float* x, const float* wp, const float* b, float* y,
                   int n0, int g, bool accumulate = false) {
  const int CRS = p.C * p.R * p.S;
  const long PQ = static_cast<long>(p.P) * p.Q, ld = g * PQ;
  const long image = static_cast<long>(p.C) * p.H * p.W;
  float* yn = y + static_cast<long>(n0) * p.K * PQ;
  const float* col = x + static_cast<long>(n0) * image;  // a pointwise filter's columns: x_n itself
  ImplicitColumns implicit;
  GemmBSource source;
  if (implicit_columns_apply(p)) {
    implicit = {padded_group(p, x, n0, g, &implicit.image), p.R, p.S, p.W + 2 * p.pad, p.Q,
                static_cast<long>(p.H + 2 * p.pad) * (p.W + 2 * p.pad), implicit.image, PQ};
    source = {&pack_columns, &implicit};
    col = nullptr;
  } else if (!is_pointwise(p)) {
    float* c = grow(scratch().col, static_cast<std::size_t>(CRS) * ld);
    for (int i = 0; i < g; ++i) im2col(p, x + (n0 + i) * image, c + i * PQ, ld);
    col = c;
  }
  const auto params = [&](int N, float beta) {
    GemmParams gp = gemm_params(false, false, p.K, N, CRS, 1.0f, beta);
    if (!col) gp.b_source = &source;
    return gp;
  };
  if (g == 1) {
    gemm_cpu_prepacked_a(params(static_cast<int>(PQ), accumulate ? 1.0f : 0.0f), wp, col, yn);
    if (b) add_bias(p, b, yn);
    return;
  }
  float* out = grow(scratch().kpq, static_cast<std::size_t>(p.K) * ld);
  gemm_cpu_prepacked_a(params(static_cast<int>(ld), 0.0f), wp, col, out);
  store_group(p, out, b, yn, g, accumulate);
}

// dx of images [n0, n0+g) += col2im(wᵀ · dy_group).
void backward_data_group(const Conv2dParams& p, const float* dy, const float* wtp, float* dx,
                         int n0, int g) {
  const int CRS = p.C * p.R * p.S;
  const long PQ = static_cast<long>(p.P) * p.Q, ld = g * PQ;
  const long image = static_cast<long>(p.C) * p.H * p.W;
  if (is_pointwise(p)) {  // g == 1: the columns are dx_n itself, accumulate into it
    gemm_cpu_prepacked_a(gemm_params(true, false, CRS, PQ, p.K, 1.0f, 1.0f), wtp,
                         dy + static_cast<long>(n0) * p.K * PQ, dx + static_cast<long>(n0) * image);
    return;
  }
  const float* dyg = gather_dy(p, dy, n0, g);
  float* col = grow(scratch().col, static_cast<std::size_t>(CRS) * ld);
  gemm_cpu_prepacked_a(gemm_params(true, false, CRS, ld, p.K), wtp, dyg, col);
  for (int i = 0; i < g; ++i) col2im(p, col + i * PQ, ld, dx + (n0 + i) * image);
}

// dw (K, CRS) += dy_group · col_groupᵀ and db (K) += row sums of dy_group.
void accumulate_weight_grad(const Conv2dParams& p, const float* x, const float* dy, int n0, int g,
                            float* dw, float* db) {
  const int CRS = p.C * p.R * p.S;
  const long PQ = static_cast<long>(p.P) * p.Q, ld = g * PQ;
  const long image = static_cast<long>(p.C) * p.H * p.W;
  const float* dyg = gather_dy(p, dy, n0, g);
  if (is_pointwise(p)) {
    // g == 1, col_n is x_n (C x PQ): GEMM's own packing does the transpose.
    gemm_cpu(gemm_params(false, true, p.K, CRS, PQ, 1.0f, 1.0f), dyg,
             x + static_cast<long>(n0) * image, dw);
  } else if (g_path != 1) {
    // colᵀ packed straight from the images (pack_columns_t).
    ImplicitColumnsT implicit;
    implicit.xp = padded_group(p, x, n0, g, &implicit.image, true);
    implicit.R = p.R;
    implicit.S = p.S;
    implicit.Wp = p.W + 2 * p.pad;
    implicit.Q = p.Q;
    implicit.stride = p.stride;
    implicit.plane = static_cast<long>(p.H + 2 * p.pad) * implicit.Wp;
    implicit.PQ = PQ;
    const GemmBSource source{&pack_columns_t, &implicit};
    GemmParams gp = gemm_params(false, false, p.K, CRS, static_cast<int>(ld), 1.0f, 1.0f);
    gp.b_source = &source;
    gemm_cpu(gp, dyg, nullptr, dw);
  } else {
    // The images' colᵀ (PQ, CRS) one after another are the group's (g*PQ, CRS).
    float* colt = grow(scratch().col, static_cast<std::size_t>(CRS) * ld + kSlack);
    for (int i = 0; i < g; ++i) im2col_transposed(p, x + (n0 + i) * image, colt + i * PQ * CRS);
    gemm_cpu(gemm_params(false, false, p.K, CRS, ld, 1.0f, 1.0f), dyg, colt, dw);
  }
  if (db) add_row_sums(dyg, p.K, ld, db);
}

// --- Tap GEMMs: small maps without multiplying the padding.
//
// im2col's product w · col multiplies every tap with every output position,
// also where the tap's window hangs over the border and reads padding: on a
// 3x3 map with a 3x3 filter and padding 1 only 49 of the 81 (position, tap)
// pairs read the image, so 40% of the arithmetic multiplies zeros (21% at
// 6x6, 11% at 12x12: ResNet-18@96's last stages, AlexNet's 3x3 layers).
// oneDNN's direct kernels skip those taps. Here the convolution is summed
// tap by tap instead: tap (r, s) reads the image on a rectangle of output
// positions (tap_rect), and over those positions it is a 1x1 convolution,
//   y[:, rect] += W_rs · X_rs        (K x C)(C x positions in the rect)
//   dW_rs      += dy[:, rect] · X_rsᵀ
// with X_rs the pixels the tap reads there: with stride 1 runs of the
// images that the GEMM packs straight from x (pack_columns), else gathered
// first (gather_tap). A tap whose rect is the whole map writes (or adds)
// straight into the group's output; the others go through a small product
// that is added into it (for_tap_runs). Each tap's reduction is only C long,
// so the output tile is loaded and stored R*S times as often as im2col's:
// this pays only where the padding share is large and C is not small
// (tap_gemms_apply; measured in CPU_VS_TORCH.md, round six). The data
// gradient, a forward convolution of dy (flipped_forward), takes the same
// path; the weights are packed tap by tap (pack_weights_taps).

// Output positions [oh0, oh1) x [ow0, ow1) where tap (r, s) reads the image.
struct TapRect {
  int oh0, oh1, ow0, ow1;
  int rows() const { return oh1 - oh0; }
  int cols() const { return ow1 - ow0; }
  bool full(const Conv2dParams& p) const { return rows() == p.P && cols() == p.Q; }
};
TapRect tap_rect(const Conv2dParams& p, int r, int s) {
  const Span h = valid_outputs(p.pad, r, p.stride, p.H, p.P);
  const Span w = valid_outputs(p.pad, s, p.stride, p.W, p.Q);
  return {h.lo, std::max(h.lo, h.hi), w.lo, std::max(w.lo, w.hi)};
}

// The share of im2col's (position, tap) products that read padding.
double padding_share(const Conv2dParams& p) {
  long rows = 0, cols = 0;
  for (int r = 0; r < p.R; ++r) rows += tap_rect(p, r, 0).rows();
  for (int s = 0; s < p.S; ++s) cols += tap_rect(p, 0, s).cols();
  return 1.0 - static_cast<double>(rows) * cols / (static_cast<double>(p.R) * p.S * p.P * p.Q);
}

bool tap_gemms_apply(const Conv2dParams& p) {
  if (is_pointwise(p) || (g_path != 0 && g_path != 4)) return false;
  return g_path == 4 || (p.C >= kTapMinChannels && padding_share(p) >= kTapMinPaddingShare);
}

// X_rs (C, g * rows * cols) for images [n0, n0+g): row c holds, image by
// image and row by row, the pixels tap (r, s) reads at the rect's positions.
void gather_tap(const Conv2dParams& p, const float* x, int n0, int g, int r, int s,
                const TapRect& t, float* __restrict out) {
  const int rows = t.rows(), cols = t.cols(), st = p.stride, W = p.W;
  const long plane = static_cast<long>(p.H) * W, image = p.C * plane;
  const long first = static_cast<long>(t.oh0 * st - p.pad + r) * W + (t.ow0 * st - p.pad + s);
  for (int c = 0; c < p.C; ++c)
    for (int i = 0; i < g; ++i) {
      const float* __restrict src = x + (n0 + i) * image + c * plane + first;
      for (int oh = 0; oh < rows; ++oh, src += static_cast<long>(st) * W, out += cols) {
        if (st == 1) {
          copy_floats(src, out, cols);  // a loop here became a call to memmove per row
        } else {
          for (int ow = 0; ow < cols; ++ow) out[ow] = src[ow * st];
        }
      }
    }
}

// Calls f(group offset, tap offset, cols) for each run of a tap's positions:
// a group's (K, g*PQ) matrix and one tap's (K, g*rows*cols) matrix (its
// positions in gather_tap's order) hold that run at those offsets.
template <typename F>
void for_tap_runs(const Conv2dParams& p, const TapRect& rect, int g, F&& f) {
  const long PQ = static_cast<long>(p.P) * p.Q;
  const int rows = rect.rows(), cols = rect.cols();
  long t = 0;
  for (int k = 0; k < p.K; ++k)
    for (int i = 0; i < g; ++i)
      for (int oh = 0; oh < rows; ++oh, t += cols)
        f((static_cast<long>(k) * g + i) * PQ + static_cast<long>(rect.oh0 + oh) * p.Q + rect.ow0,
          t, cols);
}

// w (K, C, R, S) as R*S GEMM operands, each packed once for the call (as
// pack_weights), `tap_floats` apart: W_rs (K, C) for the forward, or with
// `flipped` the operands of flipped_forward's convolution, whose tap (r, s)
// is W_(R-1-r, S-1-s)ᵀ (C, K). Either way w is first put tap-major within
// each filter, (K, R*S, C), where W_rs is a matrix with rows R*S*C apart.
const float* pack_weights_taps(const Conv2dParams& p, const float* w, bool flipped,
                               long* tap_floats) {
  const int RS = p.R * p.S, C = p.C, K = p.K;
  const long row = static_cast<long>(RS) * C;
  GemmParams g = flipped ? gemm_params(true, false, C, 1, K) : gemm_params(false, false, K, 1, C);
  g.lda = static_cast<int>(row);
  *tap_floats = static_cast<long>(gemm_cpu_packed_a_floats(g));
  float* wt = grow(scratch().wtap, static_cast<std::size_t>(K) * row);
  float* packed = grow(scratch().wpack, static_cast<std::size_t>(RS) * *tap_floats);
  const bool parallel = !omp_in_parallel() && K * row > 100000;
#pragma omp parallel for schedule(static) if (parallel)
  for (int k = 0; k < K; ++k) {
    const float* __restrict src = w + k * row;
    float* __restrict dst = wt + k * row;
    for (int c = 0; c < C; ++c)
      for (int t = 0; t < RS; ++t) dst[static_cast<long>(t) * C + c] = src[c * RS + t];
  }
  for (int t = 0; t < RS; ++t)
    gemm_cpu_pack_a(g, wt + static_cast<long>(flipped ? RS - 1 - t : t) * C,
                    packed + t * *tap_floats);
  return packed;
}

// forward_group by tap GEMMs: wt from pack_weights_taps.
// Not inlined: inlined into forward_taps' parallel loop it ran 12-15% slower
// (ResNet's 512x3x3 layers, 10.4 -> 11.9 ms; measured, cause not found).
__attribute__((noinline)) void forward_taps_group(const Conv2dParams& p, const float* x,
                                                  const float* wt, long tap_floats, const float* b,
                                                  float* y, int n0, int g, bool accumulate) {
  const long PQ = static_cast<long>(p.P) * p.Q, ld = g * PQ;
  float* yn = y + static_cast<long>(n0) * p.K * PQ;
  // One image: its y is the group's (K, PQ) output itself.
  float* out = g == 1 ? yn : grow(scratch().kpq, static_cast<std::size_t>(p.K) * ld);
  bool holds = g == 1 && accumulate;  // out already holds what the taps add to
  const long image = static_cast<long>(p.C) * p.H * p.W;
  float* X = p.stride == 1 ? nullptr : grow(scratch().col, static_cast<std::size_t>(p.C) * ld);
  // The taps that see the whole map first, straight into out; then the rest.
  for (int whole = 1; whole >= 0; --whole)
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        const TapRect rect = tap_rect(p, r, s);
        const long positions = static_cast<long>(g) * rect.rows() * rect.cols();
        if (rect.full(p) != (whole == 1) || positions == 0) continue;
        const float* wrs = wt + (r * p.S + s) * tap_floats;
        // X_rs: with stride 1 its rows are runs of the images, which the
        // GEMM packs straight from x (pack_columns, as a 1x1 filter over the
        // rect); with a stride, gathered first.
        const float* B = X;
        ImplicitColumns implicit;
        GemmBSource source{&pack_columns, &implicit};
        if (p.stride == 1) {
          const long first = static_cast<long>(rect.oh0 - p.pad + r) * p.W + (rect.ow0 - p.pad + s);
          implicit = {x + n0 * image + first, 1, 1, p.W, rect.cols(), static_cast<long>(p.H) * p.W,
                      image, static_cast<long>(rect.rows()) * rect.cols()};
          B = nullptr;
        } else {
          gather_tap(p, x, n0, g, r, s, rect, X);
        }
        const auto params = [&](long n, float beta) {
          GemmParams gp = gemm_params(false, false, p.K, static_cast<int>(n), p.C, 1.0f, beta);
          if (!B) gp.b_source = &source;
          return gp;
        };
        if (whole) {
          gemm_cpu_prepacked_a(params(ld, holds ? 1.0f : 0.0f), wrs, B, out);
        } else {
          if (!holds) std::fill_n(out, p.K * ld, 0.0f);
          float* t = grow(scratch().tap, static_cast<std::size_t>(p.K) * positions);
          gemm_cpu_prepacked_a(params(positions, 0.0f), wrs, B, t);
          for_tap_runs(p, rect, g, [&](long m, long j, int n) {
            float* __restrict dst = out + m;
            const float* __restrict src = t + j;
            for (int i = 0; i < n; ++i) dst[i] += src[i];
          });
        }
        holds = true;
      }
  if (!holds) std::fill_n(out, p.K * ld, 0.0f);  // no tap reads the image at all
  if (g > 1) return store_group(p, out, b, yn, g, accumulate);
  if (b) add_bias(p, b, yn);
}

// accumulate_weight_grad by tap GEMMs, into part (K, R*S, C): tap-major in
// each filter, W_rs a matrix with rows R*S*C apart (as in pack_weights_taps).
void weight_taps_group(const Conv2dParams& p, const float* x, const float* dy, int n0, int g,
                       float* part, float* db) {
  const long ld = static_cast<long>(g) * p.P * p.Q;
  const float* dyg = gather_dy(p, dy, n0, g);
  float* X = grow(scratch().col, static_cast<std::size_t>(p.C) * ld);
  for (int r = 0; r < p.R; ++r)
    for (int s = 0; s < p.S; ++s) {
      const TapRect rect = tap_rect(p, r, s);
      const long positions = static_cast<long>(g) * rect.rows() * rect.cols();
      if (positions == 0) continue;
      gather_tap(p, x, n0, g, r, s, rect, X);
      const float* d = dyg;
      if (!rect.full(p)) {
        float* t = grow(scratch().tap, static_cast<std::size_t>(p.K) * positions);
        for_tap_runs(p, rect, g, [&](long m, long j, int n) { copy_floats(dyg + m, t + j, n); });
        d = t;
      }
      // dW_rs (K, C) += dy[:, rect] (K, positions) · X_rsᵀ, rows R*S*C apart
      GemmParams gp = gemm_params(false, true, p.K, p.C, static_cast<int>(positions), 1.0f, 1.0f);
      gp.ldc = p.R * p.S * p.C;
      gemm_cpu(gp, d, X, part + static_cast<long>(r * p.S + s) * p.C);
    }
  if (db) add_row_sums(dyg, p.K, ld, db);
}

// The calling thread's buffer for partial sums of the weight gradient,
// `total` floats, zeroed.
float* zeroed_partial(long total) {
  float* mine = grow(scratch().partial, static_cast<std::size_t>(total));
  std::fill(mine, mine + total, 0.0f);
  return mine;
}

// Images of group i.
int group_size(const Conv2dParams& p, const Plan& pl, int i) {
  return std::min(pl.group, p.N - i * pl.group);
}

// w as the GEMMs of this call take it, packed once by the calling thread and
// read by every thread: op(A) = w (K, CRS) for the forward, wᵀ (CRS, K) for
// the data gradient.
const float* pack_weights(const Conv2dParams& p, const float* w, bool transposed) {
  const int CRS = p.C * p.R * p.S;
  const GemmParams g =
      transposed ? gemm_params(true, false, CRS, 1, p.K) : gemm_params(false, false, p.K, 1, CRS);
  float* packed = grow(scratch().wpack, gemm_cpu_packed_a_floats(g));
  gemm_cpu_pack_a(g, w, packed);
  return packed;
}

// The forward of p by tap GEMMs over the plan's groups, its weights packed
// from w as pack_weights_taps(pw, w, flipped): the layer's own forward, or
// (flipped) flipped_forward's convolution p of dy, with pw the layer's.
void forward_taps(const Conv2dParams& p, const float* x, const Conv2dParams& pw, const float* w,
                  bool flipped, const float* b, float* y, bool accumulate) {
  const Plan pl = plan(p, kTapGroupColumns);
  long tap_floats = 0;
  const float* wt = pack_weights_taps(pw, w, flipped, &tap_floats);
  RegionErrors errors;
#pragma omp parallel for schedule(dynamic) num_threads(pl.threads) if (pl.threads > 1)
  for (int i = 0; i < pl.groups; ++i)
    errors.run([&] {
      forward_taps_group(p, x, wt, tap_floats, b, y, i * pl.group, group_size(p, pl, i),
                         accumulate);
    });
  errors.rethrow();
}

}  // namespace

void conv2d_cpu_cap_group_images_for_testing(int images) {
  g_group_cap = images;
}

void conv2d_cpu_path_for_testing(int path) {
  g_path = path;
}

namespace {
bool use_direct(const Conv2dParams& p, ConvPass pass) {
  if (g_path == 2) return conv2d_direct_applies(p);
  return g_path == 0 && conv2d_direct_pays(p, pass);
}
}  // namespace

void conv2d_forward_cpu(const Conv2dParams& p, const float* x, const float* w, const float* b,
                        float* y) {
  if (use_direct(p, ConvPass::kForward)) return conv2d_forward_direct(p, x, w, b, y);
  if (tap_gemms_apply(p)) return forward_taps(p, x, p, w, false, b, y, false);
  const Plan pl = plan(p);
  const float* wp = pack_weights(p, w, false);
  RegionErrors errors;
#pragma omp parallel for schedule(dynamic) num_threads(pl.threads) if (pl.threads > 1)
  for (int i = 0; i < pl.groups; ++i)
    errors.run([&] { forward_group(p, x, wp, b, y, i * pl.group, group_size(p, pl, i)); });
  errors.rethrow();
}

namespace {

// The data gradient of a stride-1 convolution is itself a stride-1
// convolution: dx[c][h][w] = Σ_k Σ_r,s dy[k][h + pad - r][w + pad - s] w[k][c][r][s]
// is the forward of dy (K channels, P x Q) through the filters
// w'[c][k][r][s] = w[k][c][R-1-r][S-1-s] with padding R-1-pad, which gives
// back H x W. Its GEMM reduces over K*R*S terms into C rows where the plain
// route (wᵀ · dy, then col2im) reduces over only K into C*R*S rows and then
// scatters R*S taps back: with 5x5 filters (AlexNet's conv2: K = 256,
// 25 taps) the short reduction and the 25-way scatter made that route about
// 40% slower than the forward of the same layer.
bool flipped_forward_applies(const Conv2dParams& p) {
  return p.stride == 1 && p.R == p.S && p.pad <= p.R - 1 && !is_pointwise(p);
}
// Measured (2 threads, AVX-512, best of 3 x 8 runs, 2026-12-01): with the
// explicit columns only 5x5 paid (AlexNet's conv2 260 -> 196 ms; at 3x3 the
// im2col copy cost what the short scatter did). With the implicit columns
// above 3x3 pays too: ResNet-18@96's 64x24x24 15.8 -> 12.9 ms, 128x12x12
// 13.9 -> 12.3, 256x6x6 12.4 -> 11.9, 512x3x3 equal; AlexNet's conv4
// (384 -> 256 at 12x12) 37.6 -> 32.4; VGG's 128x112x112 159 -> 131. So every
// stride-1 layer it applies to takes it.

void flipped_forward(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  Conv2dParams q = p;
  q.C = p.K;
  q.H = p.P;
  q.W = p.Q;
  q.K = p.C;
  q.pad = p.R - 1 - p.pad;
  q.P = p.H;
  q.Q = p.W;
  if (tap_gemms_apply(q)) return forward_taps(q, dy, p, w, true, nullptr, dx, true);
  const Plan pl = plan(q);
  const int RS = p.R * p.S;
  float* wf = grow(scratch().wflip, static_cast<std::size_t>(p.K) * p.C * RS);
  // On the threads, each writing whole rows of wf (9 MiB on ResNet's
  // 512-channel layers: one thread flipping while the other waited cost as
  // much as a tenth of the layer).
  // Blocks of 16 input channels: for each k the block's filters are one
  // contiguous read, and the 16 rows of wf each advance in order.
  const bool parallel = !omp_in_parallel() && static_cast<long>(p.K) * p.C * RS > 100000;
  constexpr int kBlockC = 16;
#pragma omp parallel for schedule(static) if (parallel)
  for (int c0 = 0; c0 < p.C; c0 += kBlockC)
    for (int k = 0; k < p.K; ++k)
      for (int c = c0; c < std::min(p.C, c0 + kBlockC); ++c) {
        const float* src = w + (static_cast<long>(k) * p.C + c) * RS;
        float* dst = wf + (static_cast<long>(c) * p.K + k) * RS;
        for (int i = 0; i < RS; ++i) dst[i] = src[RS - 1 - i];
      }
  const float* wp = pack_weights(q, wf, false);
  RegionErrors errors;
#pragma omp parallel for schedule(dynamic) num_threads(pl.threads) if (pl.threads > 1)
  for (int i = 0; i < pl.groups; ++i)
    errors.run(
        [&] { forward_group(q, dy, wp, nullptr, dx, i * pl.group, group_size(q, pl, i), true); });
  errors.rethrow();
}

// conv2d_backward_weight_cpu by tap GEMMs: per-thread partial sums (K, R*S,
// C), then added into dw (K, C, R, S) in a fixed order.
void weight_taps(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db) {
  // One group per thread: each tap's reduction as long as it can be, so dw's
  // partial sums are loaded and stored as few times as they can be.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const Plan pl = plan(p, (p.N + threads - 1) / threads * p.P * p.Q);
  const int RS = p.R * p.S;
  const long kc = static_cast<long>(p.K) * p.C, wsize = RS * kc, total = wsize + p.K;
  std::vector<float*> partials(pl.threads, nullptr);
  RegionErrors errors;
#pragma omp parallel num_threads(pl.threads) if (pl.threads > 1)
  {
    float* mine = nullptr;
    errors.run([&] { mine = partials[omp_get_thread_num()] = zeroed_partial(total); });
#pragma omp for schedule(static)
    for (int i = 0; i < pl.groups; ++i) {
      if (mine)
        errors.run([&] {
          weight_taps_group(p, x, dy, i * pl.group, group_size(p, pl, i), mine,
                            db ? mine + wsize : nullptr);
        });
    }
    if (!errors.failed()) {
#pragma omp for schedule(static)
      for (int k = 0; k < p.K; ++k)
        for (int c = 0; c < p.C; ++c)
          for (int t = 0; t < RS; ++t) {
            const long from = (static_cast<long>(k) * RS + t) * p.C + c;
            float s = 0.0f;
            for (float* part : partials) s += part[from];
            dw[(static_cast<long>(k) * p.C + c) * RS + t] += s;
          }
      if (db) {
#pragma omp for schedule(static)
        for (int k = 0; k < p.K; ++k) {
          float s = 0.0f;
          for (float* part : partials) s += part[wsize + k];
          db[k] += s;
        }
      }
    }
  }
  errors.rethrow();
}

}  // namespace

void conv2d_backward_data_cpu(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (use_direct(p, ConvPass::kData)) return conv2d_backward_data_direct(p, dy, w, dx);
  if ((g_path == 0 || g_path == 3 || g_path == 4) && flipped_forward_applies(p))
    return flipped_forward(p, dy, w, dx);
  const Plan pl = plan(p);
  const float* wtp = pack_weights(p, w, true);
  RegionErrors errors;
#pragma omp parallel for schedule(dynamic) num_threads(pl.threads) if (pl.threads > 1)
  for (int i = 0; i < pl.groups; ++i)
    errors.run([&] { backward_data_group(p, dy, wtp, dx, i * pl.group, group_size(p, pl, i)); });
  errors.rethrow();
}

void conv2d_backward_weight_cpu(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                float* db) {
  // The direct kernel (kernels/cpu/conv2d_direct.cpp) where it pays, one
  // image at a time; else im2col + GEMM over the plan's groups.
  const bool direct = use_direct(p, ConvPass::kWeight);
  if (!direct && tap_gemms_apply(p)) return weight_taps(p, x, dy, dw, db);
  Plan pl = plan(p);
  if (direct) {
    // One run of images per thread.
    const int t = omp_in_parallel() ? 1 : omp_get_max_threads();
    const int g = (p.N + t - 1) / t, groups = (p.N + g - 1) / g;
    pl = Plan{g, groups, groups};
  }
  const auto accumulate = [&](int i, float* dwp, float* dbp) {
    const int n0 = i * pl.group, g = group_size(p, pl, i);
    if (!direct) return accumulate_weight_grad(p, x, dy, n0, g, dwp, dbp);
    conv2d_weight_direct(p, x, dy, n0, g, dwp);
    const long kpq = static_cast<long>(p.K) * p.P * p.Q;
    if (dbp)
      for (int n = n0; n < n0 + g; ++n) add_row_sums(dy + n * kpq, p.K, p.P * p.Q, dbp);
  };
  if (pl.threads == 1) {
    for (int i = 0; i < pl.groups; ++i) accumulate(i, dw, db);
    return;
  }
  const int threads = pl.threads;
  const long wsize = static_cast<long>(p.K) * p.C * p.R * p.S;
  const long total = wsize + p.K;  // dw then db in one partial buffer
  std::vector<float*> partials(threads, nullptr);
  RegionErrors errors;
#pragma omp parallel num_threads(threads)
  {
    float* mine = nullptr;
    errors.run([&] { mine = partials[omp_get_thread_num()] = zeroed_partial(total); });
    // static: each thread's set of groups, and so the rounding, is fixed.
#pragma omp for schedule(static)
    for (int i = 0; i < pl.groups; ++i) {
      if (mine) errors.run([&] { accumulate(i, mine, db ? mine + wsize : nullptr); });
    }
    // After the implicit barrier above every partial is complete; on an error
    // dw and db are left as they were.
    if (!errors.failed()) {
#pragma omp for schedule(static)
      for (long i = 0; i < total; ++i) {
        float s = 0.0f;
        for (float* part : partials)
          if (part) s += part[i];
        if (i < wsize)
          dw[i] += s;
        else if (db)
          db[i - wsize] += s;
      }
    }
  }
  errors.rethrow();
}

}  // namespace scratchnet::kernels
