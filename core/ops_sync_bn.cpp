// Batch norm in training mode with statistics over every data-parallel rank
// (--sync-bn; PyTorch's SyncBatchNorm), built from the batch-norm kernels
// that exist (so it runs wherever they do) and a caller-given sum over the
// ranks of a few doubles per channel.
//
// Forward, with m = N*H*W summed over the ranks:
//   1. Σx per channel: the backward kernel in eval mode with dy = x,
//      mean 0 and invstd 1 gives Σ dy = Σx (in its dbeta output);
//      summed over the ranks with m: mean μ = Σx / m.
//   2. Σ x(x - μ): the same with mean μ (its dgamma output); summed over the
//      ranks, Σ(x - μ)² = Σ x(x - μ) - μ(Σx - mμ) (exact algebra; the second
//      term only corrects μ's rounding), so the biased variance is that / m.
//      Two passes rather than Σx² - mμ², which cancels badly when |μ| >> σ.
//   3. y = (x - μ) / sqrt(var + eps) * gamma + beta: the eval-mode forward
//      kernel with (μ, var) as its running statistics.
//   4. The running statistics move with μ and the unbiased var * m / (m - 1).
// Backward, with xhat = (x - μ) * invstd and the sums over every rank:
//   dx = gamma * invstd * (dy - Σdy / m - xhat * Σ(dy xhat) / m)
//      = [eval-mode backward: gamma * invstd * dy]
//        + [eval-mode forward with gamma' = -gamma invstd Σ(dy xhat) / m and
//           beta' = -gamma invstd Σdy / m: an affine map of xhat];
//   dgamma, dbeta get this rank's Σ(dy xhat), Σdy: the gradient all-reduce
//   that follows backward adds the other ranks' shares.
// The statistics go through host memory (2 small copies per pass): correct
// everywhere, and a synchronisation per layer on a GPU.
#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/ops_internal.h"
#include "kernels/batchnorm.h"

namespace scratchnet {

using namespace ops_detail;

namespace {

void bn_eval(const k::BatchNormParams& p, const Tensor& x, const Tensor& gamma, const Tensor& beta,
             const Tensor& mean, const Tensor& var, Tensor& y) {
  [[maybe_unused]] const char* op = "batch_norm (synchronised)";
  if (x.is_cuda()) {
    SN_GPU(k::batch_norm_forward_eval_cuda(p, x.data<float>(), gamma.data<float>(),
                                           beta.data<float>(), mean.data<float>(),
                                           var.data<float>(), y.data<float>(), stream()));
  } else {
    k::batch_norm_forward_eval_cpu(p, x.data<float>(), gamma.data<float>(), beta.data<float>(),
                                   mean.data<float>(), var.data<float>(), y.data<float>());
  }
}

// The eval-mode backward kernel: dx (optional) += gamma * invstd * dy,
// dgamma += Σ dy * (x - mean) * invstd, dbeta += Σ dy.
void bn_sums(const k::BatchNormParams& p, const Tensor& x, const Tensor& dy, const Tensor& gamma,
             const Tensor& mean, const Tensor& invstd, const Tensor& dx, Tensor& dgamma,
             Tensor& dbeta) {
  [[maybe_unused]] const char* op = "batch_norm (synchronised)";
  if (x.is_cuda()) {
    SN_GPU(Tensor ws = workspace(k::batch_norm_workspace_bytes_cuda(p), x.device());
           k::batch_norm_backward_cuda(p, false, x.data<float>(), nullptr, dy.data<float>(),
                                       gamma.data<float>(), mean.data<float>(),
                                       invstd.data<float>(), ptr_or_null(dx), dgamma.data<float>(),
                                       dbeta.data<float>(), ws.data<uint8_t>(), stream()));
  } else {
    k::batch_norm_backward_cpu(p, false, x.data<float>(), nullptr, dy.data<float>(),
                               gamma.data<float>(), mean.data<float>(), invstd.data<float>(),
                               ptr_or_null(dx), dgamma.data<float>(), dbeta.data<float>());
  }
}

std::vector<double> doubles(const Tensor& t) {
  const std::vector<float> v = t.to_vector<float>();
  return std::vector<double>(v.begin(), v.end());
}

Tensor floats(const std::vector<float>& v, Device d) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, d);
}

}  // namespace

Tensor batch_norm_synced(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const Tensor& running_mean, const Tensor& running_var,
                         const SumOverRanks& sum_over_ranks, float momentum, float eps) {
  [[maybe_unused]] const char* op = "batch_norm (synchronised)";
  if (!sum_over_ranks) throw ValueError("batch_norm_synced: no sum over the ranks given");
  const auto p = batch_norm_checks(op, x, gamma, beta, running_mean, running_var, momentum, eps);
  const int64_t C = p.C;
  const Device d = x.device();
  const auto c = static_cast<std::size_t>(C);
  const Tensor ones = Tensor::full({C}, 1.0f, d), zeros = Tensor::zeros({C}, d);

  // 1. The mean over every rank.
  Tensor sx = Tensor::zeros({C}, d), scratch = Tensor::zeros({C}, d);
  bn_sums(p, x, x, ones, zeros, ones, Tensor(), scratch, sx);
  std::vector<double> s1 = doubles(sx);
  s1.push_back(static_cast<double>(x.numel() / C));
  sum_over_ranks(s1);
  const double m = s1[c];
  if (m < 2)
    throw ShapeError(
        "batch_norm: training needs more than one value per channel over the ranks, "
        "got " +
        x.str());
  std::vector<float> mu(c);
  for (std::size_t i = 0; i < c; ++i) mu[i] = static_cast<float>(s1[i] / m);
  const Tensor mean = floats(mu, d);

  // 2. The variance over every rank.
  Tensor sxx = Tensor::zeros({C}, d);
  scratch.zero_();
  bn_sums(p, x, x, ones, mean, ones, Tensor(), sxx, scratch);
  std::vector<double> s2 = doubles(sxx);
  sum_over_ranks(s2);
  std::vector<float> var(c), invstd(c);
  for (std::size_t i = 0; i < c; ++i) {
    const double centred = s2[i] - mu[i] * (s1[i] - m * mu[i]);
    var[i] = static_cast<float>(std::max(0.0, centred / m));
    invstd[i] = 1.0f / std::sqrt(var[i] + eps);
  }
  const Tensor variance = floats(var, d), inv = floats(invstd, d);

  // 3. Normalise; 4. the running statistics.
  Tensor y = Tensor::empty(x.shape(), d);
  bn_eval(p, x, gamma, beta, mean, variance, y);
  std::vector<float> rm = running_mean.to_vector<float>(), rv = running_var.to_vector<float>();
  for (std::size_t i = 0; i < c; ++i) {
    rm[i] = (1.0f - momentum) * rm[i] + momentum * mu[i];
    rv[i] = (1.0f - momentum) * rv[i] + momentum * static_cast<float>(var[i] * (m / (m - 1)));
  }
  Tensor(running_mean).copy_(floats(rm, Device::cpu()));
  Tensor(running_var).copy_(floats(rv, Device::cpu()));

  if (needs_grad({&x, &gamma, &beta})) {
    record(y, op, {x, gamma, beta}, {x.detach(), gamma.detach(), mean, variance, inv},
           [p, m, sum_over_ranks](const Tensor& gy, const std::vector<Tensor>& g,
                                  const std::vector<Tensor>& s) {
             const Tensor &xs = s[0], &gs = s[1], &mean = s[2], &variance = s[3], &inv = s[4];
             const Device d = gy.device();
             const auto c = static_cast<std::size_t>(p.C);
             Tensor dx = g[0], dgamma = g[1], dbeta = g[2];
             Tensor sum_dy_xhat = Tensor::zeros({p.C}, d), sum_dy = Tensor::zeros({p.C}, d);
             bn_sums(p, xs, gy, gs, mean, inv, dx, sum_dy_xhat, sum_dy);
             if (dgamma.defined()) accumulate(sum_dy_xhat, dgamma);
             if (dbeta.defined()) accumulate(sum_dy, dbeta);
             if (!dx.defined()) return;
             std::vector<double> sums = doubles(sum_dy);
             const std::vector<double> b = doubles(sum_dy_xhat);
             sums.insert(sums.end(), b.begin(), b.end());
             sum_over_ranks(sums);
             const std::vector<float> gamma = gs.to_vector<float>(),
                                      invstd = inv.to_vector<float>();
             std::vector<float> g2(c), b2(c);
             for (std::size_t i = 0; i < c; ++i) {
               const double k = static_cast<double>(gamma[i]) * invstd[i] / m;
               g2[i] = static_cast<float>(-k * sums[c + i]);
               b2[i] = static_cast<float>(-k * sums[i]);
             }
             Tensor correction = Tensor::empty(xs.shape(), d);
             bn_eval(p, xs, floats(g2, d), floats(b2, d), mean, variance, correction);
             accumulate(correction, dx);
           });
  }
  return y;
}

}  // namespace scratchnet
