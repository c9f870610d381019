// CPU reference for batch normalisation, PyTorch semantics (see batchnorm.h).
// Layout x (N, C, HW): channel c's values are N runs of HW contiguous floats.
// Parallel over channels: each channel's statistics are summed by one thread
// in a fixed order and in double, so results are bit-identical for any
// thread count (for a given build) and stay accurate for N*HW in the
// hundreds of thousands. Runs are summed with per-vector-lane partial sums
// (see run_sum).
// Statistics use two passes (mean, then squared deviations): the one-pass
// E[x^2] - E[x]^2 loses everything when |mean| >> std. (The CUDA kernel reads
// x once for them instead, merging per-block moments; this stays the plain
// two-pass oracle.)
// The fused ReLU (p.relu) is the unfused composition's arithmetic exactly:
// the same affine value clamped at 0; backward's g = (y > 0 ? dy : 0) is what
// ReLU's backward would have written into a zeroed buffer.
#include "kernels/batchnorm.h"

#include <cmath>

namespace scratchnet::kernels {

namespace {

inline const float* run(const BatchNormParams& p, const float* base, int n, int c) {
  return base + (static_cast<int64_t>(n) * p.C + c) * p.HW;
}
inline float* run(const BatchNormParams& p, float* base, int n, int c) {
  return base + (static_cast<int64_t>(n) * p.C + c) * p.HW;
}

// y = (x - mean) * scale + beta over channel c (then max(., 0) with p.relu).
// Subtracting the mean first (rather than folding it into one shift) keeps
// the precision when |mean| >> std: x * scale and the shift would cancel.
void affine_channel(const BatchNormParams& p, int c, const float* x, float mean, float scale,
                    float beta, float* y) {
  for (int n = 0; n < p.N; ++n) {
    const float* xr = run(p, x, n, c);
    float* yr = run(p, y, n, c);
    if (p.relu) {
#pragma omp simd
      for (int i = 0; i < p.HW; ++i) {
        const float v = (xr[i] - mean) * scale + beta;
        yr[i] = v > 0.0f ? v : 0.0f;
      }
    } else {
#pragma omp simd
      for (int i = 0; i < p.HW; ++i) yr[i] = (xr[i] - mean) * scale + beta;
    }
  }
}

// The gradient reaching BN's output: dy, or with RELU ReLU's backward of
// it (y > 0). Both loads unconditional and a select, so the loops that use
// it vectorise: `yr == nullptr || yr[i] > 0 ? dyr[i] : 0` may skip a load,
// and GCC kept every loop with it scalar (the fused BN + ReLU backward of a
// ResNet-18 step was 7% of it on the CPU).
template <bool RELU>
inline float grad_in(const float* yr, const float* dyr, int i) {
  const float d = dyr[i];
  if (!RELU) return d;
  const float y = yr[i];
  return y > 0.0f ? d : 0.0f;
}

// Σ f(i) for i in [0, n) in double. The simd reduction keeps one partial sum
// per vector lane (a fixed order for a given build, whatever the thread
// count); a single serial chain of double adds would run at one element per
// add latency.
template <typename F>
double run_sum(int n, F f) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += f(i);
  return s;
}

// Σ dy and Σ dy * xhat over one run, in one read of the run.
struct RunSums {
  double dy, dy_xhat;
};
// yr: the fused ReLU's output run (mask y > 0), or nullptr. With the mask
// the gradient is first selected into a float block and then summed: GCC
// vectorises neither a select of floats feeding double sums nor the
// conditional load of `yr == nullptr || yr[i] > 0 ? dy : 0`, and that scalar
// loop was 7% of a ResNet-18 step on the CPU. Same sums, same order.
RunSums dy_sums(int n, const float* xr, const float* yr, const float* dyr, float mean,
                float invstd) {
  double a = 0.0, b = 0.0;
  constexpr int kBlock = 256;
  float masked[kBlock];
  for (int i0 = 0; i0 < n; i0 += kBlock) {
    const int len = n - i0 < kBlock ? n - i0 : kBlock;
    const float* g = dyr + i0;
    if (yr) {
#pragma omp simd
      for (int i = 0; i < len; ++i) masked[i] = grad_in<true>(yr + i0, g, i);
      g = masked;
    }
    const float* xb = xr + i0;
#pragma omp simd reduction(+ : a, b)
    for (int i = 0; i < len; ++i) {
      const double gi = g[i];
      a += gi;
      b += gi * ((xb[i] - mean) * invstd);
    }
  }
  return {a, b};
}

// dx (or dx +=) over one run: the training formula with the batch
// statistics' terms, or (!training) the plain affine map's k * g.
template <bool RELU>
void dx_run(int n, bool training, const float* xr, const float* yr, const float* dyr, float mean,
            float invstd, float k, float mean_dy, float mean_dy_xhat, bool write, float* dxr) {
  if (!training) {
#pragma omp simd
    for (int i = 0; i < n; ++i) {
      const float v = k * grad_in<RELU>(yr, dyr, i);
      dxr[i] = write ? v : dxr[i] + v;
    }
    return;
  }
#pragma omp simd
  for (int i = 0; i < n; ++i) {
    const float xhat = (xr[i] - mean) * invstd;
    const float v = k * (grad_in<RELU>(yr, dyr, i) - mean_dy - xhat * mean_dy_xhat);
    dxr[i] = write ? v : dxr[i] + v;
  }
}

}  // namespace

void batch_norm_forward_train_cpu(const BatchNormParams& p, const float* x, const float* gamma,
                                  const float* beta, float* y, float* save_mean, float* save_invstd,
                                  float* running_mean, float* running_var) {
  const double m = static_cast<double>(p.N) * p.HW;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < p.C; ++c) {
    double sum = 0.0;
    for (int n = 0; n < p.N; ++n) {
      const float* xr = run(p, x, n, c);
      sum += run_sum(p.HW, [xr](int i) { return static_cast<double>(xr[i]); });
    }
    const double mean = sum / m;
    double sq = 0.0;
    for (int n = 0; n < p.N; ++n) {
      const float* xr = run(p, x, n, c);
      sq += run_sum(p.HW, [xr, mean](int i) {
        const double d = xr[i] - mean;
        return d * d;
      });
    }
    const double var = sq / m;  // biased: what normalises the batch
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(p.eps));
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
    // PyTorch tracks the unbiased variance; the op layer ensures m >= 2.
    const double var_unbiased = m > 1.0 ? sq / (m - 1.0) : var;
    running_mean[c] = static_cast<float>((1.0 - p.momentum) * running_mean[c] + p.momentum * mean);
    running_var[c] =
        static_cast<float>((1.0 - p.momentum) * running_var[c] + p.momentum * var_unbiased);
    affine_channel(p, c, x, save_mean[c], static_cast<float>(invstd * gamma[c]), beta[c], y);
  }
}

void batch_norm_forward_eval_cpu(const BatchNormParams& p, const float* x, const float* gamma,
                                 const float* beta, const float* running_mean,
                                 const float* running_var, float* y) {
#pragma omp parallel for schedule(static)
  for (int c = 0; c < p.C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + p.eps);
    affine_channel(p, c, x, running_mean[c], static_cast<float>(invstd * gamma[c]), beta[c], y);
  }
}

void batch_norm_backward_cpu(const BatchNormParams& p, bool training, const float* x,
                             const float* y, const float* dy, const float* gamma,
                             const float* save_mean, const float* save_invstd, float* dx,
                             float* dgamma, float* dbeta, bool write_dx) {
  const double m = static_cast<double>(p.N) * p.HW;
  const bool relu = p.relu;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < p.C; ++c) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int n = 0; n < p.N; ++n) {
      const float* xr = run(p, x, n, c);
      const float* dyr = run(p, dy, n, c);
      const float* yr = relu ? run(p, y, n, c) : nullptr;
      const RunSums r = dy_sums(p.HW, xr, yr, dyr, mean, invstd);
      sum_dy += r.dy;
      sum_dy_xhat += r.dy_xhat;
    }
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
    if (!dx) continue;
    // Without training the statistics are constants: a plain affine map.
    const float k = gamma[c] * invstd;
    const float mean_dy = static_cast<float>(sum_dy / m);
    const float mean_dy_xhat = static_cast<float>(sum_dy_xhat / m);
    for (int n = 0; n < p.N; ++n) {
      const float* xr = run(p, x, n, c);
      const float* dyr = run(p, dy, n, c);
      const float* yr = relu ? run(p, y, n, c) : nullptr;
      float* dxr = run(p, dx, n, c);
      if (relu)
        dx_run<true>(p.HW, training, xr, yr, dyr, mean, invstd, k, mean_dy, mean_dy_xhat, write_dx,
                     dxr);
      else
        dx_run<false>(p.HW, training, xr, yr, dyr, mean, invstd, k, mean_dy, mean_dy_xhat,
                      write_dx, dxr);
    }
  }
}

void batch_norm_invstd_cpu(int C, float eps, const float* var, float* invstd) {
  for (int c = 0; c < C; ++c)
    invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
}

}  // namespace scratchnet::kernels
