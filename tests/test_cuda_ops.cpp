// [cuda] pooling, pointwise ops, batch norm, dropout, softmax cross-entropy,
// argmax / count_correct, SGD, bilinear resize and the data gathers against
// the CPU reference. Kernels are called directly: outputs are poisoned with
// NaN first, and buffers that backward accumulates into start from the same
// random values on both devices (checks +=). Also run-to-run bit identity of
// the reductions (batch norm, cross-entropy) and dropout masks equal to the
// CPU's.
// Tolerance rule: see test_cuda_helpers.h. Pooling: exact (rule 1) where the
// data make it so (max pooling always; average pooling with integer data and,
// backward, a power-of-two window), else the fp64 reference (rule 2). Batch
// norm, cross-entropy, global average pooling, pointwise ops, SGD and resize
// forward: rule 3, m named at each comparison. Resize backward: rule 2 with an
// fp64 reference built from the CPU forward's impulse responses.
#ifdef SCRATCHNET_WITH_CUDA
#include <cmath>
#include <vector>

#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/batchnorm.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gather.h"
#include "kernels/pool2d.h"
#include "kernels/resize.h"
#include "kernels/sgd.h"
#include "kernels/softmax_ce.h"
#include "test_cuda_helpers.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;
namespace k = scratchnet::kernels;

namespace {

Tensor workspace(std::size_t bytes) {
  return Tensor::empty({std::max<int64_t>(static_cast<int64_t>(bytes), 1)}, gpu(), DType::U8);
}

Tensor labels_pair_cpu(int N, int C, uint64_t seed) {
  Generator g(seed);
  auto u = g.uniform(N, 0.0f, static_cast<float>(C));
  std::vector<int32_t> v(static_cast<std::size_t>(N));
  for (int i = 0; i < N; ++i) v[i] = std::min(C - 1, static_cast<int>(u[i]));
  return Tensor::from_vector(v, {N});
}

}  // namespace

TEST_CASE("pooling CUDA kernels match the CPU", "[cuda][pool]") {
  struct Case {
    int N, C, H, W, R, stride, pad;
  };
  std::vector<Case> cases = {{1, 1, 5, 5, 2, 2, 0}, {2, 3, 13, 11, 3, 2, 1},
                             {1, 2, 7, 9, 3, 1, 1}, {2, 2, 12, 12, 5, 4, 2},
                             {3, 1, 8, 8, 1, 1, 0}, {1, 3, 11, 11, 11, 1, 5},
                             {2, 3, 9, 9, 4, 2, 2}};
  if (!small()) cases.push_back({64, 16, 28, 28, 2, 2, 0});
  uint64_t seed = 3000;
  auto s = cuda::stream();
  for (const auto& c : cases)
    for (bool exact : {true, false}) {
      // Integer data: many ties, so the "first maximum in window order" rule is exercised.
      INFO("pool N=" << c.N << " C=" << c.C << " H=" << c.H << " W=" << c.W << " k=" << c.R
                     << " stride=" << c.stride << " pad=" << c.pad
                     << (exact ? " (integer data)" : " (uniform data)"));
      auto make = [&](const Shape& sh, uint64_t sd) {
        return exact ? exact_pair(sh, sd) : random_pair(sh, sd);
      };
      const auto p = k::pool2d_params("max_pool2d", c.N, c.C, c.H, c.W, c.R, c.R, c.stride, c.pad);
      Pair x = make({p.N, p.C, p.H, p.W}, seed += 10);
      const Shape out{p.N, p.C, p.P, p.Q};
      // max: values and argmax indices must agree exactly (same window order).
      Tensor y = poisoned(out), yc = Tensor::zeros(out);
      Tensor arg = Tensor::empty(out, gpu(), DType::I32),
             argc = Tensor::zeros(out, Device::cpu(), DType::I32);
      k::max_pool2d_forward_cuda(p, x.gpu.data<float>(), y.data<float>(), arg.data<int32_t>(), s);
      k::max_pool2d_forward_cpu(p, x.cpu.data<float>(), yc.data<float>(), argc.data<int32_t>());
      require_exact(y, yc, "max y");
      CHECK(arg.to_vector<int32_t>() == argc.to_vector<int32_t>());
      // max backward sums dy over the windows whose maximum an input is: exact
      // with integer dy (any order), within rule 2 of dy's double sum otherwise.
      Pair dy = make(out, seed + 1), dx = make(x.cpu.shape(), seed + 2);
      const Tensor dx0 = dx.cpu.clone();
      k::max_pool2d_backward_cuda(p, dy.gpu.data<float>(), arg.data<int32_t>(),
                                  dx.gpu.data<float>(), s);
      k::max_pool2d_backward_cpu(p, dy.cpu.data<float>(), argc.data<int32_t>(),
                                 dx.cpu.data<float>());
      // An input lies in at most ceil(R/stride)^2 windows.
      const double L_back = std::pow(std::ceil(double(c.R) / c.stride), 2) + 1;
      if (exact) {
        require_exact(dx.gpu, dx.cpu, "max dx");
      } else {
        // The fp64 reference of max backward, from the CPU's argmax.
        Ref64 ref;
        const auto d0 = dx0.to_vector(), g = dy.cpu.to_vector();
        const auto am = argc.to_vector<int32_t>();
        ref.value.assign(d0.begin(), d0.end());
        std::vector<double> q(d0.size());
        for (std::size_t i = 0; i < d0.size(); ++i) q[i] = double(d0[i]) * d0[i];
        const int64_t hw = int64_t(p.H) * p.W, pq = int64_t(p.P) * p.Q;
        for (std::size_t o = 0; o < am.size(); ++o) {
          const std::size_t i = static_cast<std::size_t>((int64_t(o) / pq) * hw + am[o]);
          ref.value[i] += g[o];
          q[i] += double(g[o]) * g[o];
        }
        for (double& v : q) v = std::sqrt(v);
        ref.norm = q;
        require_ref64(dx.gpu, ref, L_back, "max dx");
      }
      // average: the window's sum, then * (1/(R*S)), in the same order on both sides.
      Tensor ya = poisoned(out), yac = Tensor::zeros(out);
      k::avg_pool2d_forward_cuda(p, x.gpu.data<float>(), ya.data<float>(), s);
      k::avg_pool2d_forward_cpu(p, x.cpu.data<float>(), yac.data<float>());
      if (exact)
        require_exact(ya, yac, "avg y");
      else
        require_ulps(ya, yac, c.R * c.R, "avg y");  // m: the window's sum
      Pair dxa = make(x.cpu.shape(), seed + 3);
      const Tensor dxa0 = dxa.cpu.clone();
      k::avg_pool2d_backward_cuda(p, dy.gpu.data<float>(), dxa.gpu.data<float>(), s);
      k::avg_pool2d_backward_cpu(p, dy.cpu.data<float>(), dxa.cpu.data<float>());
      const bool pow2 = ((c.R * c.R) & (c.R * c.R - 1)) == 0;  // dy/(R*S) exact
      if (exact && pow2)
        require_exact(dxa.gpu, dxa.cpu, "avg dx");
      else
        require_ref64(dxa.gpu, avg_pool_backward_ref64(p, dy.cpu.data<float>(), dxa0.data<float>()),
                      L_back, "avg dx");
      // Write mode (a gather) into a poisoned buffer equals accumulating into zeros.
      Tensor dxw = poisoned(x.cpu.shape()), dxz = Tensor::zeros(x.cpu.shape(), gpu());
      k::avg_pool2d_backward_cuda(p, dy.gpu.data<float>(), dxw.data<float>(), s, true);
      k::avg_pool2d_backward_cuda(p, dy.gpu.data<float>(), dxz.data<float>(), s);
      require_exact(dxw.to_vector(), dxz.to_vector(), "avg dx written");
      // global average over each plane: both sum in double and round once (rule 3, m = 0).
      const int planes = p.N * p.C, hw = p.H * p.W;
      Tensor g = poisoned({planes}), gc = Tensor::zeros({planes});
      k::global_avg_pool_forward_cuda(planes, hw, x.gpu.data<float>(), g.data<float>(), s);
      k::global_avg_pool_forward_cpu(planes, hw, x.cpu.data<float>(), gc.data<float>());
      require_ulps(g, gc, 0.0, "global y");
      Pair gdy = make({planes}, seed + 4), gdx = make(x.cpu.shape(), seed + 5);
      k::global_avg_pool_backward_cuda(planes, hw, gdy.gpu.data<float>(), gdx.gpu.data<float>(), s);
      k::global_avg_pool_backward_cpu(planes, hw, gdy.cpu.data<float>(), gdx.cpu.data<float>());
      require_ulps(gdx.gpu, gdx.cpu, 2.0, "global dx");  // dx0 + dy/hw, |.| <= 2
      Tensor gdxw = poisoned(x.cpu.shape()), gdxz = Tensor::zeros(x.cpu.shape(), gpu());
      k::global_avg_pool_backward_cuda(planes, hw, gdy.gpu.data<float>(), gdxw.data<float>(), s,
                                       true);
      k::global_avg_pool_backward_cuda(planes, hw, gdy.gpu.data<float>(), gdxz.data<float>(), s);
      require_exact(gdxw.to_vector(), gdxz.to_vector(), "global dx written");
    }
}

TEST_CASE("pointwise CUDA kernels match the CPU", "[cuda][elementwise]") {
  auto s = cuda::stream();
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 3}}) {
    INFO("n=" << n);
    Pair a = random_pair({n}, 1, -4.0f, 4.0f), b = random_pair({n}, 2), dy = random_pair({n}, 3);
    using Fwd = void (*)(int64_t, const float*, float*, k::Stream);
    using FwdC = void (*)(int64_t, const float*, float*);
    // Backward kernels take a trailing write flag (= instead of +=).
    using Bwd = void (*)(int64_t, const float*, const float*, float*, k::Stream, bool);
    using BwdC = void (*)(int64_t, const float*, const float*, float*, bool);
    struct Op {
      const char* name;
      Fwd f;
      FwdC fc;
      Bwd b;
      BwdC bc;
    };
    for (const Op& op : {Op{"relu", k::relu_forward_cuda, k::relu_forward_cpu,
                            k::relu_backward_cuda, k::relu_backward_cpu},
                         Op{"sigmoid", k::sigmoid_forward_cuda, k::sigmoid_forward_cpu,
                            k::sigmoid_backward_cuda, k::sigmoid_backward_cpu}}) {
      INFO(op.name);
      Tensor y = poisoned({n}), yc = Tensor::zeros({n});
      op.f(n, a.gpu.data<float>(), y.data<float>(), s);
      op.fc(n, a.cpu.data<float>(), yc.data<float>());
      require_ulps(y, yc, 1.0, "y");  // relu exact; sigmoid: expf may differ by ulps
      Pair dx = random_pair({n}, 4);
      // Backward from the same y on both sides (the CPU's), so only the rule differs.
      Tensor ycg = yc.to(gpu());
      op.b(n, ycg.data<float>(), dy.gpu.data<float>(), dx.gpu.data<float>(), s, false);
      op.bc(n, yc.data<float>(), dy.cpu.data<float>(), dx.cpu.data<float>(), false);
      require_ulps(dx.gpu, dx.cpu, 2.0, "dx");  // dx0 + dy * y(1 - y), |.| <= 2
      // Write mode into poisoned buffers: every element set, equal to
      // accumulating into zeros (the same product on each side).
      Tensor dxw = poisoned({n}), dxwc = Tensor::full({n}, NAN);
      Tensor dxz = Tensor::zeros({n}, gpu()), dxzc = Tensor::zeros({n});
      op.b(n, ycg.data<float>(), dy.gpu.data<float>(), dxw.data<float>(), s, true);
      op.b(n, ycg.data<float>(), dy.gpu.data<float>(), dxz.data<float>(), s, false);
      op.bc(n, yc.data<float>(), dy.cpu.data<float>(), dxwc.data<float>(), true);
      op.bc(n, yc.data<float>(), dy.cpu.data<float>(), dxzc.data<float>(), false);
      require_exact(dxw.to_vector(), dxz.to_vector(), "dx written (GPU)");
      require_exact(dxwc.to_vector(), dxzc.to_vector(), "dx written (CPU)");
    }
    Tensor y = poisoned({n}), yc = Tensor::zeros({n});
    k::add_forward_cuda(n, a.gpu.data<float>(), b.gpu.data<float>(), y.data<float>(), s);
    k::add_forward_cpu(n, a.cpu.data<float>(), b.cpu.data<float>(), yc.data<float>());
    require_exact(y, yc, "add");
    k::accumulate_cuda(n, b.gpu.data<float>(), y.data<float>(), s);
    k::accumulate_cpu(n, b.cpu.data<float>(), yc.data<float>());
    require_exact(y, yc, "accumulate");
    k::fill_cuda(n, 2.5f, y.data<float>(), s);
    CHECK(y.to_vector() == std::vector<float>(static_cast<std::size_t>(n), 2.5f));
  }
}

TEST_CASE("batch norm CUDA kernels match the CPU and are deterministic", "[cuda][batchnorm]") {
  struct Case {
    int N, C, HW;
    float lo = 2.0f, hi = 4.0f;
  };
  // The last case has a mean 1000x its spread: y must be computed as
  // (x - mean) * scale + beta, not x * scale + shift (which cancels).
  std::vector<Case> cases = {
      {2, 3, 1}, {7, 5, 9}, {1, 4, 49}, {16, 130, 1}, {32, 4, 25, 1000.0f, 1001.0f}};
  if (!small()) {
    cases.push_back({256, 6, 784});  // several chunks per channel
    cases.push_back({64, 64, 196});
  }
  auto s = cuda::stream();
  uint64_t seed = 4000;
  for (const auto& c : cases) {
    INFO("batch norm N=" << c.N << " C=" << c.C << " HW=" << c.HW);
    const auto p = k::batch_norm_params(c.N, c.C, c.HW, 1e-5f, 0.1f);
    const Shape xs{c.N, c.C, c.HW};
    // Mean far from 0 relative to the spread: catches one-pass variance.
    Pair x = random_pair(xs, seed += 10, c.lo, c.hi);
    Pair gamma = random_pair({c.C}, seed + 1, 0.5f, 1.5f), beta = random_pair({c.C}, seed + 2);
    Pair rm = random_pair({c.C}, seed + 3), rv = random_pair({c.C}, seed + 4, 0.5f, 2.0f);
    // The determinism re-run below starts from these copies: it must not
    // update rm.gpu / rv.gpu a second time (the eval checks use them).
    const Tensor rm_start = rm.gpu.clone(), rv_start = rv.gpu.clone();
    Tensor ws = workspace(k::batch_norm_workspace_bytes_cuda(p));
    Tensor y = poisoned(xs), yc = Tensor::zeros(xs);
    Tensor mean = poisoned({c.C}), inv = poisoned({c.C}), meanc = Tensor::zeros({c.C}),
           invc = Tensor::zeros({c.C});
    k::batch_norm_forward_train_cuda(p, x.gpu.data<float>(), gamma.gpu.data<float>(),
                                     beta.gpu.data<float>(), y.data<float>(), mean.data<float>(),
                                     inv.data<float>(), rm.gpu.data<float>(), rv.gpu.data<float>(),
                                     ws.data<uint8_t>(), s);
    k::batch_norm_forward_train_cpu(p, x.cpu.data<float>(), gamma.cpu.data<float>(),
                                    beta.cpu.data<float>(), yc.data<float>(), meanc.data<float>(),
                                    invc.data<float>(), rm.cpu.data<float>(), rv.cpu.data<float>());
    // Statistics are summed in double on both sides and rounded once to float:
    // the same float unless the two double sums straddle a rounding boundary
    // (~1e-9 per channel; the data are fixed), so save_mean / save_invstd must
    // be equal. Running statistics mix in the old values (|.| < 2): rule 3, m = 2.
    require_exact(mean, meanc, "save_mean");
    require_exact(inv, invc, "save_invstd");
    require_ulps(rm.gpu, rm.cpu, 2.0, "running_mean");
    require_ulps(rv.gpu, rv.cpu, 2.0, "running_var");
    // y = (x - mean) * scale + beta, the same unfused float operations on both
    // sides from equal mean and scale: rule 3 with m = the operands' size,
    // |x - mean| * scale + |beta|. Folding the mean into one shift (x * scale +
    // (beta - mean * scale)) would err by ~u * |x| * scale: 2e-4 for the
    // mean-1000 case, far outside this.
    const double max_inv = [&] {
      double v = 0;
      for (float f : invc.to_vector()) v = std::max(v, double(f));
      return v;
    }();
    require_ulps(y, yc, (c.hi - c.lo) * max_inv * 1.5 + 1.0, "y");
    // Determinism: a second run from the same running statistics gives the same bits.
    const auto y_first = y.to_vector();
    Tensor y2 = poisoned(xs), mean2 = poisoned({c.C}), inv2 = poisoned({c.C});
    Tensor rm2 = rm_start.clone(), rv2 = rv_start.clone();
    k::batch_norm_forward_train_cuda(p, x.gpu.data<float>(), gamma.gpu.data<float>(),
                                     beta.gpu.data<float>(), y2.data<float>(), mean2.data<float>(),
                                     inv2.data<float>(), rm2.data<float>(), rv2.data<float>(),
                                     ws.data<uint8_t>(), s);
    CHECK(bit_identical(y_first, y2.to_vector()));
    CHECK(bit_identical(mean.to_vector(), mean2.to_vector()));
    CHECK(bit_identical(inv.to_vector(), inv2.to_vector()));
    CHECK(bit_identical(rm.gpu.to_vector(), rm2.to_vector()));
    CHECK(bit_identical(rv.gpu.to_vector(), rv2.to_vector()));

    for (bool training : {true, false}) {
      INFO("backward training=" << training);
      Pair dy = random_pair(xs, seed + 5), dx = random_pair(xs, seed + 6);
      Pair dg = random_pair({c.C}, seed + 7), db = random_pair({c.C}, seed + 8);
      k::batch_norm_backward_cuda(
          p, training, x.gpu.data<float>(), nullptr, dy.gpu.data<float>(), gamma.gpu.data<float>(),
          meanc.to(gpu()).data<float>(), invc.to(gpu()).data<float>(), dx.gpu.data<float>(),
          dg.gpu.data<float>(), db.gpu.data<float>(), ws.data<uint8_t>(), s);
      k::batch_norm_backward_cpu(p, training, x.cpu.data<float>(), nullptr, dy.cpu.data<float>(),
                                 gamma.cpu.data<float>(), meanc.data<float>(), invc.data<float>(),
                                 dx.cpu.data<float>(), dg.cpu.data<float>(), db.cpu.data<float>());
      // Sums in double rounded once, added to the old value (|.| < 1): rule 3, m = 1.
      // xhat is the same float expression on both sides.
      require_ulps(db.gpu, db.cpu, 1.0, "dbeta");
      require_ulps(dg.gpu, dg.cpu, 1.0, "dgamma");
      // dx0 + k (dy - mean_dy - xhat mean_dy_xhat) in float, k = gamma invstd:
      // m = k (|dy| + |mean_dy| + |xhat| |mean_dy_xhat|) + |dx0|, |xhat| <= (hi - lo) invstd.
      const double kmax = 1.5 * max_inv;
      require_ulps(dx.gpu, dx.cpu, kmax * (3.0 + (c.hi - c.lo) * max_inv) + 1.0, "dx");
      // dx may be null (input needs no gradient): only the parameter gradients.
      Tensor dg2 = Tensor::zeros({c.C}, gpu()), db2 = Tensor::zeros({c.C}, gpu());
      k::batch_norm_backward_cuda(p, training, x.gpu.data<float>(), nullptr, dy.gpu.data<float>(),
                                  gamma.gpu.data<float>(), meanc.to(gpu()).data<float>(),
                                  invc.to(gpu()).data<float>(), nullptr, dg2.data<float>(),
                                  db2.data<float>(), ws.data<uint8_t>(), s);
      const auto dg2a = dg2.to_vector();
      dg2.zero_();
      k::batch_norm_backward_cuda(p, training, x.gpu.data<float>(), nullptr, dy.gpu.data<float>(),
                                  gamma.gpu.data<float>(), meanc.to(gpu()).data<float>(),
                                  invc.to(gpu()).data<float>(), nullptr, dg2.data<float>(),
                                  db2.data<float>(), ws.data<uint8_t>(), s);
      CHECK(bit_identical(dg2a, dg2.to_vector()));
    }

    Tensor ye = poisoned(xs), yec = Tensor::zeros(xs);
    k::batch_norm_forward_eval_cuda(p, x.gpu.data<float>(), gamma.gpu.data<float>(),
                                    beta.gpu.data<float>(), rm.gpu.data<float>(),
                                    rv.gpu.data<float>(), ye.data<float>(), s);
    k::batch_norm_forward_eval_cpu(p, x.cpu.data<float>(), gamma.cpu.data<float>(),
                                   beta.cpu.data<float>(), rm.cpu.data<float>(),
                                   rv.cpu.data<float>(), yec.data<float>());
    // The same float affine map from the running statistics; those may differ
    // by an ulp between the devices: m as for y, with invstd of rv >= 0.5.
    require_ulps(ye, yec, std::max(std::fabs(c.lo), std::fabs(c.hi)) * 1.5 * 1.5 + 1.0, "eval y");
    Tensor iv = poisoned({c.C}), ivc = Tensor::zeros({c.C});
    k::batch_norm_invstd_cuda(c.C, 1e-5f, rv.gpu.data<float>(), iv.data<float>(), s);
    k::batch_norm_invstd_cpu(c.C, 1e-5f, rv.cpu.data<float>(), ivc.data<float>());
    require_ulps(iv, ivc, 0.0, "invstd");
  }
}

TEST_CASE("dropout CUDA masks equal the CPU's bit for bit", "[cuda][dropout]") {
  auto s = cuda::stream();
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{100003}})
    for (float p : {0.1f, 0.5f, 0.9f}) {
      INFO("n=" << n << " p=" << p);
      Pair x = random_pair({n}, 5, 0.5f, 1.5f);  // nonzero: a zero output means dropped
      Tensor y = poisoned({n}), yc = Tensor::zeros({n});
      k::dropout_forward_cuda(n, p, 1234, 77, x.gpu.data<float>(), y.data<float>(), s);
      k::dropout_forward_cpu(n, p, 1234, 77, x.cpu.data<float>(), yc.data<float>());
      CHECK(bit_identical(y.to_vector(), yc.to_vector()));
      // Backward into zeros is a pure product: bit-identical too. Into random
      // values the host compiler may fuse the += into an FMA: tolerance.
      Pair dy = random_pair({n}, 6);
      Tensor dx0 = Tensor::zeros({n}, gpu()), dx0c = Tensor::zeros({n});
      k::dropout_backward_cuda(n, p, 1234, 77, dy.gpu.data<float>(), dx0.data<float>(), s);
      k::dropout_backward_cpu(n, p, 1234, 77, dy.cpu.data<float>(), dx0c.data<float>());
      CHECK(bit_identical(dx0.to_vector(), dx0c.to_vector()));
      Pair dx = random_pair({n}, 7);
      k::dropout_backward_cuda(n, p, 1234, 77, dy.gpu.data<float>(), dx.gpu.data<float>(), s);
      k::dropout_backward_cpu(n, p, 1234, 77, dy.cpu.data<float>(), dx.cpu.data<float>());
      require_ulps(dx.gpu, dx.cpu, 1.0 + 1.0 / (1.0 - p), "dx");  // dx0 + dy / (1 - p)
      // Write mode into poisoned buffers: the same values as into zeros.
      Tensor dxw = poisoned({n}), dxwc = Tensor::full({n}, NAN);
      k::dropout_backward_cuda(n, p, 1234, 77, dy.gpu.data<float>(), dxw.data<float>(), s,
                               nullptr, true);
      k::dropout_backward_cpu(n, p, 1234, 77, dy.cpu.data<float>(), dxwc.data<float>(), true);
      CHECK(bit_identical(dxw.to_vector(), dx0c.to_vector()));
      CHECK(bit_identical(dxwc.to_vector(), dx0c.to_vector()));
    }
}

TEST_CASE("softmax cross-entropy CUDA kernels match the CPU and are deterministic",
          "[cuda][softmax_ce]") {
  struct Case {
    int N, C;
  };
  std::vector<Case> cases = {{1, 1}, {1, 10}, {3, 33}, {256, 10}, {37, 1000}};
  if (!small()) cases.push_back({10000, 10});
  auto s = cuda::stream();
  uint64_t seed = 5000;
  for (const auto& c : cases) {
    INFO("cross-entropy N=" << c.N << " C=" << c.C);
    const auto p = k::cross_entropy_params(c.N, c.C);
    Pair z = random_pair({c.N, c.C}, seed += 10, -8.0f, 8.0f);
    Tensor lab_c = labels_pair_cpu(c.N, c.C, seed + 1), lab = lab_c.to(gpu());
    Tensor loss = poisoned({1}), lossc = Tensor::zeros({1});
    Tensor probs = poisoned({c.N, c.C}), probsc = Tensor::zeros({c.N, c.C});
    k::softmax_ce_forward_cuda(p, z.gpu.data<float>(), lab.data<int32_t>(), loss.data<float>(),
                               probs.data<float>(), s);
    k::softmax_ce_forward_cpu(p, z.cpu.data<float>(), lab_c.data<int32_t>(), lossc.data<float>(),
                              probsc.data<float>());
    // exp may differ by ulps between the devices; the row sums are in double.
    require_ulps(probs, probsc, 0.0, "probs");
    // loss: mean of log(sum) + max - z[label], terms up to 16 + log C.
    require_ulps(loss, lossc, 16.0 + std::log(double(c.C)), "loss");
    const auto first = loss.to_vector();
    for (int run = 0; run < 2; ++run) {
      k::softmax_ce_forward_cuda(p, z.gpu.data<float>(), lab.data<int32_t>(), loss.data<float>(),
                                 probs.data<float>(), s);
      CHECK(bit_identical(first, loss.to_vector()));
    }
    Pair dz = random_pair({c.N, c.C}, seed + 2);
    Tensor dloss = Tensor::full({1}, 0.7f), dloss_g = dloss.to(gpu());
    k::softmax_ce_backward_cuda(p, probsc.to(gpu()).data<float>(), lab.data<int32_t>(),
                                dloss_g.data<float>(), dz.gpu.data<float>(), s);
    k::softmax_ce_backward_cpu(p, probsc.data<float>(), lab_c.data<int32_t>(), dloss.data<float>(),
                               dz.cpu.data<float>());
    require_ulps(dz.gpu, dz.cpu, 2.0, "dlogits");  // dz0 + (p - onehot) * 0.7 / N

    Tensor idx = Tensor::empty({c.N}, gpu(), DType::I32),
           idxc = Tensor::zeros({c.N}, Device::cpu(), DType::I32);
    k::argmax_rows_cuda(c.N, c.C, z.gpu.data<float>(), idx.data<int32_t>(), s);
    k::argmax_rows_cpu(c.N, c.C, z.cpu.data<float>(), idxc.data<int32_t>());
    CHECK(idx.to_vector<int32_t>() == idxc.to_vector<int32_t>());
    Tensor cnt_i = Tensor::empty({1}, gpu(), DType::I32),
           cnt_c = Tensor::zeros({1}, Device::cpu(), DType::I32);
    k::count_correct_cuda(c.N, c.C, z.gpu.data<float>(), idx.data<int32_t>(), cnt_i.data<int32_t>(),
                          s);
    CHECK(cnt_i.to_vector<int32_t>()[0] == c.N);  // argmax labels: every row correct
    k::count_correct_cuda(c.N, c.C, z.gpu.data<float>(), lab.data<int32_t>(), cnt_i.data<int32_t>(),
                          s);
    k::count_correct_cpu(c.N, c.C, z.cpu.data<float>(), lab_c.data<int32_t>(),
                         cnt_c.data<int32_t>());
    CHECK(cnt_i.to_vector<int32_t>() == cnt_c.to_vector<int32_t>());
  }
}

TEST_CASE("cross-entropy with a bad label on CUDA gives NaN, not a crash", "[cuda][softmax_ce]") {
  Tensor z = Tensor::zeros({2, 3}, gpu());
  Tensor lab = Tensor::from_vector<int32_t>({0, 7}, {2}, gpu());
  Tensor loss = cross_entropy(z, lab);
  CHECK(std::isnan(loss.item()));
}

TEST_CASE("SGD step on CUDA matches the CPU", "[cuda][sgd]") {
  auto s = cuda::stream();
  const int64_t n = small() ? 1001 : 1000003;
  for (float mu : {0.0f, 0.9f})
    for (bool nesterov : {false, true})
      for (bool first : {true, false}) {
        if (nesterov && mu == 0.0f) continue;
        INFO("momentum=" << mu << " nesterov=" << nesterov << " first=" << first);
        k::SgdParams p;
        p.lr = 0.05f;
        p.momentum = mu;
        p.weight_decay = 5e-4f;
        p.nesterov = nesterov;
        p.first_step = first;
        Pair w = random_pair({n}, 1), g = random_pair({n}, 2), buf = random_pair({n}, 3);
        k::sgd_step_cuda(n, p, w.gpu.data<float>(), g.gpu.data<float>(), buf.gpu.data<float>(), s);
        k::sgd_step_cpu(n, p, w.cpu.data<float>(), g.cpu.data<float>(), buf.cpu.data<float>());
        // Elementwise: m = the operands' size (w, g, buf in [-1, 1), momentum 0.9).
        require_ulps(w.gpu, w.cpu, 2.0, "param");
        if (mu != 0.0f) require_ulps(buf.gpu, buf.cpu, 2.0, "buf");
      }
}

namespace {

// fp64 reference of resize backward (the adjoint of the forward): the forward
// is linear, so its weights are read off the CPU forward's response to each
// input impulse of one plane; then dx = dx0 + Σ_o weight(o, i) dy[o].
Ref64 resize_backward_ref64(const k::ResizeParams& p, const float* dy, const float* dx0) {
  const int64_t in = int64_t(p.H) * p.W, out = int64_t(p.OH) * p.OW, planes = int64_t(p.N) * p.C;
  const auto one = k::resize_params(1, 1, p.H, p.W, p.OH, p.OW);
  std::vector<std::vector<std::pair<int64_t, float>>> taps(static_cast<std::size_t>(in));
  std::vector<float> impulse(static_cast<std::size_t>(in), 0.0f),
      resp(static_cast<std::size_t>(out));
  for (int64_t i = 0; i < in; ++i) {
    impulse[i] = 1.0f;
    k::resize_bilinear_forward_cpu(one, impulse.data(), resp.data());
    impulse[i] = 0.0f;
    for (int64_t o = 0; o < out; ++o)
      if (resp[o] != 0.0f) taps[i].push_back({o, resp[o]});
  }
  Ref64 r;
  r.value.resize(static_cast<std::size_t>(planes * in));
  r.norm.resize(r.value.size());
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t i = 0; i < in; ++i) {
      double s = dx0[pl * in + i], q = s * s;
      for (const auto& [o, w] : taps[i]) {
        const double t = double(w) * dy[pl * out + o];
        s += t;
        q += t * t;
      }
      r.value[pl * in + i] = s;
      r.norm[pl * in + i] = std::sqrt(q);
    }
  return r;
}

}  // namespace

TEST_CASE("bilinear resize CUDA kernels match the CPU", "[cuda][resize]") {
  struct Case {
    int N, C, H, W, OH, OW;
  };
  std::vector<Case> cases = {{1, 1, 28, 28, 28, 28}, {2, 3, 5, 7, 11, 13}, {1, 2, 17, 9, 4, 3},
                             {2, 1, 28, 28, 32, 32}, {1, 1, 1, 1, 3, 2},   {1, 1, 6, 6, 1, 1}};
  if (!small()) cases.push_back({16, 1, 28, 28, 224, 224});
  auto s = cuda::stream();
  uint64_t seed = 6000;
  for (const auto& c : cases) {
    INFO("resize " << c.H << "x" << c.W << " -> " << c.OH << "x" << c.OW);
    const auto p = k::resize_params(c.N, c.C, c.H, c.W, c.OH, c.OW);
    Pair x = random_pair({c.N, c.C, c.H, c.W}, seed += 10);
    Tensor y = poisoned({c.N, c.C, c.OH, c.OW}), yc = Tensor::zeros({c.N, c.C, c.OH, c.OW});
    k::resize_bilinear_forward_cuda(p, x.gpu.data<float>(), y.data<float>(), s);
    k::resize_bilinear_forward_cpu(p, x.cpu.data<float>(), yc.data<float>());
    // 4 weighted taps of inputs in [-1, 1); the weights come from a source
    // coordinate src = scale * (o + 0.5) - 0.5 of size up to max(H, W), which
    // the CPU build may contract into an FMA and the CUDA kernel rounds twice:
    // the weights may differ by an ulp of src, so m = max(H, W) + 1.
    require_ulps(y, yc, std::max(c.H, c.W) + 1.0, "y");
    Pair dy = random_pair({c.N, c.C, c.OH, c.OW}, seed + 1),
         dx = random_pair(x.cpu.shape(), seed + 2);
    const Tensor dx0 = dx.cpu.clone();
    k::resize_bilinear_backward_cuda(p, dy.gpu.data<float>(), dx.gpu.data<float>(), s);
    // An input pixel receives up to 4 * ceil(OH/H) * ceil(OW/W) contributions.
    const double L =
        4.0 * std::ceil(double(c.OH) / c.H + 1) * std::ceil(double(c.OW) / c.W + 1) + 1;
    require_ref64(dx.gpu, resize_backward_ref64(p, dy.cpu.data<float>(), dx0.data<float>()), L,
                  "dx");
  }
}

TEST_CASE("resize_gather_u8 and gather_labels on CUDA match the CPU", "[cuda][resize][data]") {
  const int count = 50, H = 28, W = 28, B = 17;
  std::vector<uint8_t> img(static_cast<std::size_t>(count) * H * W), lab(count);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  for (int i = 0; i < count; ++i) lab[i] = static_cast<uint8_t>(i % 10);
  std::vector<int32_t> index(B);
  for (int b = 0; b < B; ++b) index[b] = (b * 13 + 5) % count;
  Tensor images = Tensor::from_vector(img, {count, H, W}),
         labels = Tensor::from_vector(lab, {count});
  Tensor idx = Tensor::from_vector(index, {B});
  for (auto [oh, ow] :
       {std::pair{28, 28}, std::pair{32, 32}, std::pair{224, 224}, std::pair{14, 20}}) {
    INFO("out " << oh << "x" << ow);
    Tensor yc = resize_gather_u8(images, idx, oh, ow);
    Tensor yg = resize_gather_u8(images.to(gpu()), idx.to(gpu()), oh, ow);
    // bytes / 255 through 4 taps; m: the source coordinate, as for resize above.
    require_ulps(yg, yc, std::max(H, W) + 1.0, "images");
  }
  Tensor lc = gather_labels(labels, idx), lg = gather_labels(labels.to(gpu()), idx.to(gpu()));
  CHECK(lg.to_vector<int32_t>() == lc.to_vector<int32_t>());
}
#endif  // SCRATCHNET_WITH_CUDA
