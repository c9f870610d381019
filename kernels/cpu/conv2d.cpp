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
// Threading: with enough images for every thread, the batch is the
// parallel loop (each thread builds its images' columns in its own scratch
// and runs serial GEMMs; the weight gradient goes to per-thread partial sums
// added up at the end, in a fixed order, so results do not depend on timing).
// With fewer images (inference on one picture) the images run in turn and each
// GEMM spreads over the threads instead. Scratch buffers are thread_local and
// grow to the largest layer seen, so a training step allocates nothing.
#include "kernels/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace scratchnet::kernels {

namespace {

struct Scratch {
  std::vector<float> col;      // CRS x PQ columns of one image (or their transpose)
  std::vector<float> padded;   // one image with its zero border
  std::vector<float> partial;  // this thread's share of dw (K x CRS) then db (K)
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

// Threads for the batch loop: all of them when the images share out evenly
// enough (a whole number each, or several each so the last round matters
// little), else 1, and the GEMMs inside parallelise themselves.
int batch_threads(const Conv2dParams& p) {
  if (omp_in_parallel()) return 1;
  const int t = omp_get_max_threads();
  return p.N % t == 0 || p.N >= 4 * t ? t : 1;
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

// col (CRS, PQ) from one image x (C, H, W): row (c, r, s) is the input seen
// through tap (c, r, s) at every output position.
void im2col(const Conv2dParams& p, const float* x, float* col) {
  const float* xp = padded(p, x, false);
  const int Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  for (int c = 0; c < p.C; ++c)
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        float* out = col + ((static_cast<long>(c) * p.R + r) * p.S + s) * p.P * p.Q;
        for (int oh = 0; oh < p.P; ++oh, out += p.Q) {
          const float* in = xp + (static_cast<long>(c) * Hp + oh * p.stride + r) * Wp + s;
          if (p.stride == 1) {  // a plain copy, which the compiler vectorises
            for (int ow = 0; ow < p.Q; ++ow) out[ow] = in[ow];
          } else {
            for (int ow = 0; ow < p.Q; ++ow) out[ow] = in[ow * p.stride];
          }
        }
      }
}

// colᵀ (PQ, CRS) from one image: the weight gradient's GEMM then reads it
// row-major without a transposing copy (which costs more than the GEMM itself
// at LeNet's sizes). Each output position copies its receptive field.
void im2col_transposed(const Conv2dParams& p, const float* x, float* colt) {
  const float* xp = padded(p, x, true);
  const int Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  // Filter rows of up to 8 taps (3x3, 5x5, 7x7) move as one 8-float copy:
  // the surplus lands where the next row is about to be written, or in the
  // slack of colt, and the source over-read stays inside xp's slack.
  const bool short_rows = p.S <= 8;
  float* out = colt;
  for (int oh = 0; oh < p.P; ++oh)
    for (int ow = 0; ow < p.Q; ++ow)
      for (int c = 0; c < p.C; ++c)
        for (int r = 0; r < p.R; ++r, out += p.S) {
          const float* in =
              xp + (static_cast<long>(c) * Hp + oh * p.stride + r) * Wp + ow * p.stride;
          if (short_rows) {
            std::memcpy(out, in, 8 * sizeof(float));
          } else {
            for (int s = 0; s < p.S; ++s) out[s] = in[s];
          }
        }
}

// dx (C, H, W) += the columns col (CRS, PQ) scattered back to their pixels.
void col2im(const Conv2dParams& p, const float* col, float* dx) {
  const long PQ = static_cast<long>(p.P) * p.Q;
  for (int c = 0; c < p.C; ++c)
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        const float* row = col + ((static_cast<long>(c) * p.R + r) * p.S + s) * PQ;
        const Span q = valid_outputs(p.pad, s, p.stride, p.W, p.Q);
        const int off = s - p.pad;
        for (int oh = 0; oh < p.P; ++oh) {
          const int ih = oh * p.stride - p.pad + r;
          if (ih < 0 || ih >= p.H) continue;
          const float* in = row + static_cast<long>(oh) * p.Q;
          float* out = dx + (static_cast<long>(c) * p.H + ih) * p.W;
          if (p.stride == 1) {  // contiguous: lets the compiler vectorise
            for (int ow = q.lo; ow < q.hi; ++ow) out[ow + off] += in[ow];
          } else {
            for (int ow = q.lo; ow < q.hi; ++ow) out[ow * p.stride + off] += in[ow];
          }
        }
      }
}

// The columns of image n: x_n itself for a pointwise filter, else built in scratch.
const float* columns(const Conv2dParams& p, const float* x, int n) {
  const float* xn = x + static_cast<long>(n) * p.C * p.H * p.W;
  if (is_pointwise(p)) return xn;
  float* col = grow(scratch().col, static_cast<std::size_t>(p.C) * p.R * p.S * p.P * p.Q);
  im2col(p, xn, col);
  return col;
}

// dw (K, CRS) += dy_n · col_nᵀ and db (K) += row sums of dy_n, for image n.
void accumulate_weight_grad(const Conv2dParams& p, const float* x, const float* dy, int n,
                            float* dw, float* db) {
  const int CRS = p.C * p.R * p.S, PQ = p.P * p.Q;
  const float* dyn = dy + static_cast<long>(n) * p.K * PQ;
  const float* xn = x + static_cast<long>(n) * p.C * p.H * p.W;
  if (is_pointwise(p)) {
    // col_n is x_n (C x PQ): GEMM's own packing does the transpose.
    gemm_cpu(gemm_params(false, true, p.K, CRS, PQ, 1.0f, 1.0f), dyn, xn, dw);
  } else {
    float* colt = grow(scratch().col, static_cast<std::size_t>(CRS) * PQ + kSlack);
    im2col_transposed(p, xn, colt);
    gemm_cpu(gemm_params(false, false, p.K, CRS, PQ, 1.0f, 1.0f), dyn, colt, dw);
  }
  if (db) add_row_sums(dyn, p.K, PQ, db);
}

}  // namespace

void conv2d_forward_cpu(const Conv2dParams& p, const float* x, const float* w, const float* b,
                        float* y) {
  const int CRS = p.C * p.R * p.S, PQ = p.P * p.Q;
  const auto g = gemm_params(false, false, p.K, PQ, CRS);
  const int threads = batch_threads(p);
  RegionErrors errors;
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int n = 0; n < p.N; ++n) {
    errors.run([&] {
      float* yn = y + static_cast<long>(n) * p.K * PQ;
      gemm_cpu(g, w, columns(p, x, n), yn);
      if (b) {
        for (int k = 0; k < p.K; ++k) {
          float* row = yn + static_cast<long>(k) * PQ;
          for (int i = 0; i < PQ; ++i) row[i] += b[k];
        }
      }
    });
  }
  errors.rethrow();
}

void conv2d_backward_data_cpu(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const int CRS = p.C * p.R * p.S, PQ = p.P * p.Q;
  const long image = static_cast<long>(p.C) * p.H * p.W;
  const int threads = batch_threads(p);
  RegionErrors errors;
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int n = 0; n < p.N; ++n) {
    errors.run([&] {
      const float* dyn = dy + static_cast<long>(n) * p.K * PQ;
      if (is_pointwise(p)) {
        // The columns are dx_n itself: accumulate straight into it.
        gemm_cpu(gemm_params(true, false, CRS, PQ, p.K, 1.0f, 1.0f), w, dyn, dx + n * image);
      } else {
        float* col = grow(scratch().col, static_cast<std::size_t>(CRS) * PQ);
        gemm_cpu(gemm_params(true, false, CRS, PQ, p.K), w, dyn, col);
        col2im(p, col, dx + n * image);
      }
    });
  }
  errors.rethrow();
}

void conv2d_backward_weight_cpu(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                                float* db) {
  const int threads = batch_threads(p);
  if (threads == 1) {
    for (int n = 0; n < p.N; ++n) accumulate_weight_grad(p, x, dy, n, dw, db);
    return;
  }
  const long wsize = static_cast<long>(p.K) * p.C * p.R * p.S;
  const long total = wsize + p.K;  // dw then db in one partial buffer
  std::vector<float*> partials(threads, nullptr);
  RegionErrors errors;
#pragma omp parallel num_threads(threads)
  {
    float* mine = nullptr;
    errors.run([&] {
      mine = grow(scratch().partial, total);
      std::fill(mine, mine + total, 0.0f);
      partials[omp_get_thread_num()] = mine;
    });
    // static: each thread's set of images, and so the rounding, is fixed.
#pragma omp for schedule(static)
    for (int n = 0; n < p.N; ++n) {
      if (mine)
        errors.run([&] { accumulate_weight_grad(p, x, dy, n, mine, db ? mine + wsize : nullptr); });
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
