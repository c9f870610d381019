// [cuda] The fused kernels against the CPU reference: batch norm with the
// fused ReLU (training forward in two passes over x, backward with the ReLU
// mask) at ResNet-18's shapes, including a channel whose mean is 1000x its
// spread, and add_relu. Also the fused ops through autograd on both devices.
// Tolerance rule: test_cuda_helpers.h. Statistics rounded once from double on
// both sides: equal. y, dx: rule 3 with m as in test_cuda_ops.cpp's batch
// norm case (the ReLU clamps, it adds no rounding). Backward takes the CPU's
// y on both devices, so both apply the same mask. add_relu: one float add
// and a clamp, then += of a selected dy: exact. linear_relu: see its case.
#ifdef SCRATCHNET_WITH_CUDA
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "test_cuda_helpers.h"

using namespace scratchnet;
using namespace scratchnet::cudatest;
namespace k = scratchnet::kernels;

namespace {

Tensor workspace(std::size_t bytes) {
  return Tensor::empty({std::max<int64_t>(static_cast<int64_t>(bytes), 1)}, gpu(), DType::U8);
}

void check_bn_relu(int N, int C, int HW, float lo, float hi, bool training, uint64_t seed) {
  INFO("batch norm + ReLU N=" << N << " C=" << C << " HW=" << HW << " x in [" << lo << ", " << hi
                              << ") training=" << training);
  auto s = cuda::stream();
  auto p = k::batch_norm_params(N, C, HW, 1e-5f, 0.1f);
  p.relu = true;
  const Shape xs{N, C, HW};
  Pair x = random_pair(xs, seed, lo, hi);
  Pair gamma = random_pair({C}, seed + 1, 0.5f, 1.5f), beta = random_pair({C}, seed + 2);
  Pair rm = random_pair({C}, seed + 3, lo, hi), rv = random_pair({C}, seed + 4, 0.5f, 2.0f);
  Tensor ws = workspace(k::batch_norm_workspace_bytes_cuda(p));
  Tensor y = poisoned(xs), yc = Tensor::zeros(xs);
  Tensor mean = poisoned({C}), inv = poisoned({C}), meanc = Tensor::zeros({C}),
         invc = Tensor::zeros({C});
  double max_inv = 0;
  if (training) {
    k::batch_norm_forward_train_cuda(p, x.gpu.data<float>(), gamma.gpu.data<float>(),
                                     beta.gpu.data<float>(), y.data<float>(), mean.data<float>(),
                                     inv.data<float>(), rm.gpu.data<float>(), rv.gpu.data<float>(),
                                     ws.data<uint8_t>(), s);
    k::batch_norm_forward_train_cpu(p, x.cpu.data<float>(), gamma.cpu.data<float>(),
                                    beta.cpu.data<float>(), yc.data<float>(), meanc.data<float>(),
                                    invc.data<float>(), rm.cpu.data<float>(), rv.cpu.data<float>());
    require_exact(mean, meanc, "save_mean");  // one double rounded once on both sides
    require_exact(inv, invc, "save_invstd");
    require_ulps(rm.gpu, rm.cpu, 2.0 * std::max(std::fabs(lo), std::fabs(hi)), "running_mean");
    require_ulps(rv.gpu, rv.cpu, 2.0, "running_var");
    for (float f : invc.to_vector()) max_inv = std::max(max_inv, double(f));
  } else {
    k::batch_norm_forward_eval_cuda(p, x.gpu.data<float>(), gamma.gpu.data<float>(),
                                    beta.gpu.data<float>(), rm.gpu.data<float>(),
                                    rv.gpu.data<float>(), y.data<float>(), s);
    k::batch_norm_forward_eval_cpu(p, x.cpu.data<float>(), gamma.cpu.data<float>(),
                                   beta.cpu.data<float>(), rm.cpu.data<float>(),
                                   rv.cpu.data<float>(), yc.data<float>());
    k::batch_norm_invstd_cpu(C, 1e-5f, rv.cpu.data<float>(), invc.data<float>());
    meanc.copy_(rm.cpu);
    max_inv = 1.0 / std::sqrt(0.5);
  }
  const auto ycv = yc.to_vector();
  const auto zeros = std::count(ycv.begin(), ycv.end(), 0.0f);
  CHECK(zeros > 0);  // the clamp is exercised
  CHECK(zeros < static_cast<long>(ycv.size()));
  // m: |x - mean| scale + |beta|; in eval |x - running mean| <= hi - lo too.
  require_ulps(y, yc, (hi - lo) * max_inv * 1.5 + 1.0, "y");

  Pair dy = random_pair(xs, seed + 5), dx = random_pair(xs, seed + 6);
  Pair dg = random_pair({C}, seed + 7), db = random_pair({C}, seed + 8);
  Tensor y_mask = yc.to(gpu());  // the same mask on both devices
  k::batch_norm_backward_cuda(
      p, training, x.gpu.data<float>(), y_mask.data<float>(), dy.gpu.data<float>(),
      gamma.gpu.data<float>(), meanc.to(gpu()).data<float>(), invc.to(gpu()).data<float>(),
      dx.gpu.data<float>(), dg.gpu.data<float>(), db.gpu.data<float>(), ws.data<uint8_t>(), s);
  k::batch_norm_backward_cpu(p, training, x.cpu.data<float>(), yc.data<float>(),
                             dy.cpu.data<float>(), gamma.cpu.data<float>(), meanc.data<float>(),
                             invc.data<float>(), dx.cpu.data<float>(), dg.cpu.data<float>(),
                             db.cpu.data<float>());
  require_ulps(db.gpu, db.cpu, 1.0, "dbeta");
  require_ulps(dg.gpu, dg.cpu, 1.0, "dgamma");
  const double kmax = 1.5 * max_inv;
  require_ulps(dx.gpu, dx.cpu, kmax * (3.0 + (hi - lo) * max_inv) + 1.0, "dx");
}

}  // namespace

TEST_CASE("batch norm + ReLU CUDA kernels match the CPU at ResNet shapes", "[cuda][batchnorm]") {
  // ResNet-18 at 64 px, batch 2: stem (64, 32x32), stages 16x16 .. 2x2; a
  // batch-1 1x1 map (two values per channel at batch 2 is the least BN takes).
  struct Case {
    int N, C, HW;
  };
  std::vector<Case> cases = {{2, 64, 32 * 32}, {2, 64, 16 * 16}, {2, 128, 8 * 8},
                             {2, 256, 4 * 4},  {2, 512, 2 * 2},  {3, 512, 1}};
  if (!small()) cases.push_back({16, 64, 24 * 24});  // several chunks per channel
  uint64_t seed = 9100;
  for (const auto& c : cases)
    for (bool training : {true, false})
      check_bn_relu(c.N, c.C, c.HW, -1.0f, 1.0f, training, seed += 10);
  // |mean| >> std: single pass statistics must not cancel.
  check_bn_relu(32, 4, 25, 1000.0f, 1001.0f, true, 9500);
  check_bn_relu(8, 3, 3000, -2000.0f, -1999.0f, true, 9510);  // several chunks
}

TEST_CASE("add_relu CUDA kernels equal the CPU's", "[cuda][elementwise]") {
  auto s = cuda::stream();
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{2 * 64 * 16 * 16}}) {
    INFO("n=" << n);
    Pair a = random_pair({n}, 200), b = random_pair({n}, 201);
    Tensor y = poisoned({n}), yc = Tensor::zeros({n});
    k::add_relu_forward_cuda(n, a.gpu.data<float>(), b.gpu.data<float>(), y.data<float>(), s);
    k::add_relu_forward_cpu(n, a.cpu.data<float>(), b.cpu.data<float>(), yc.data<float>());
    require_exact(y, yc, "y");
    Pair dy = random_pair({n}, 202), da = random_pair({n}, 203), db = random_pair({n}, 204);
    k::add_relu_backward_cuda(n, y.data<float>(), dy.gpu.data<float>(), da.gpu.data<float>(),
                              db.gpu.data<float>(), s);
    k::add_relu_backward_cpu(n, yc.data<float>(), dy.cpu.data<float>(), da.cpu.data<float>(),
                             db.cpu.data<float>());
    require_exact(da.gpu, da.cpu, "da");
    require_exact(db.gpu, db.cpu, "db");
    // One operand needs no gradient; then both gradients in one buffer.
    k::add_relu_backward_cuda(n, y.data<float>(), dy.gpu.data<float>(), nullptr,
                              db.gpu.data<float>(), s);
    k::add_relu_backward_cpu(n, yc.data<float>(), dy.cpu.data<float>(), nullptr,
                             db.cpu.data<float>());
    require_exact(db.gpu, db.cpu, "db (da null)");
    k::add_relu_backward_cuda(n, y.data<float>(), dy.gpu.data<float>(), da.gpu.data<float>(),
                              da.gpu.data<float>(), s);
    k::add_relu_backward_cpu(n, yc.data<float>(), dy.cpu.data<float>(), da.cpu.data<float>(),
                             da.cpu.data<float>());
    require_exact(da.gpu, da.cpu, "da (da == db)");
  }
}

TEST_CASE("batch_norm_relu and add_relu ops match on GPU and CPU", "[cuda][fusion]") {
  const Shape xs{2, 8, 6, 6};
  Pair x = leaf_pair(xs, 300), skip = leaf_pair(xs, 301);
  Pair gamma = leaf_pair({8}, 302, 0.5f, 1.5f), beta = leaf_pair({8}, 303);
  Pair rm = random_pair({8}, 304), rv = random_pair({8}, 305, 0.5f, 2.0f);
  Tensor yc = add_relu(batch_norm_relu(x.cpu, gamma.cpu, beta.cpu, rm.cpu, rv.cpu, true), skip.cpu);
  Tensor yg = add_relu(batch_norm_relu(x.gpu, gamma.gpu, beta.gpu, rm.gpu, rv.gpu, true), skip.gpu);
  REQUIRE(yg.is_cuda());
  // Two ReLUs whose inputs differ by rounding: rule 3 on the values; the
  // gradients may differ where a value sits within rounding of 0 (none here
  // in practice): a loose norm check says the backward is wired right.
  require_ulps(yg, yc, 8.0, "y");
  Tensor g = testing::random_tensor(xs, 306);
  yc.backward(g);
  yg.backward(g.to(gpu()));
  for (auto* t : {&x, &skip, &gamma, &beta}) {
    const auto gc = t->cpu.grad().to_vector(), gg = t->gpu.grad().to_vector();
    double d = 0, n = 0;
    for (std::size_t i = 0; i < gc.size(); ++i) {
      d += (double(gg[i]) - gc[i]) * (double(gg[i]) - gc[i]);
      n += double(gc[i]) * gc[i];
    }
    CHECK(std::sqrt(d) <= 1e-4 * std::sqrt(n) + 1e-6);
  }
}
TEST_CASE("conv2d_relu op (the ReLU in the conv's epilogue) equals the CPU's exactly",
          "[cuda][fusion][conv2d]") {
  // Integer data (rule 1): conv sums are exact on both devices, so the ReLU
  // sees the same values and y, dx, dw, db must be equal bit for bit.
  const Shape xs{3, 4, 9, 9}, ws{6, 4, 3, 3};
  Pair x = exact_pair(xs, 310), w = exact_pair(ws, 311), b = exact_pair({6}, 312);
  for (Pair* p : {&x, &w, &b}) {
    p->cpu.set_requires_grad(true);
    p->gpu.set_requires_grad(true);
  }
  Tensor yc = conv2d_relu(x.cpu, w.cpu, b.cpu, 2, 1);
  Tensor yg = conv2d_relu(x.gpu, w.gpu, b.gpu, 2, 1);
  REQUIRE(yg.is_cuda());
  require_exact(yg, yc, "y");
  const std::vector<float> yv = yc.to_vector();
  CHECK(std::count(yv.begin(), yv.end(), 0.0f) > 0);  // the ReLU cut something
  Tensor g = exact_tensor(yc.shape(), 313);
  yc.backward(g);
  yg.backward(g.to(gpu()));
  require_exact(x.gpu.grad(), x.cpu.grad(), "dx");
  require_exact(w.gpu.grad(), w.cpu.grad(), "dw");
  require_exact(b.gpu.grad(), b.cpu.grad(), "db");
}

TEST_CASE("linear_relu op (bias and ReLU in the GEMM's epilogue) matches the CPU",
          "[cuda][fusion][linear]") {
  // Integer data (rule 1): the sums are exact on both devices, whatever the
  // split of K, so the ReLU sees the same values and y, dx, dw, db must be
  // equal bit for bit. Uniform data: y against the fp64 reference (rule 2,
  // L = IN + 1 with the bias; the ReLU clamps the reference, adding no
  // rounding). Shapes: batch 1 and 3 of a classifier layer scaled down, the
  // second long enough in K for split-K (kernels/cuda/split_k.h), no bias.
  struct Case {
    int N, IN, OUT;
    bool bias;
  };
  uint64_t seed = 320;
  for (const Case& c :
       std::vector<Case>{{1, 300, 40, true}, {3, 1568, 64, true}, {7, 33, 10, false}}) {
    INFO("linear_relu N=" << c.N << " in=" << c.IN << " out=" << c.OUT << " bias=" << c.bias);
    seed += 10;
    Pair x = exact_pair({c.N, c.IN}, seed), w = exact_pair({c.OUT, c.IN}, seed + 1);
    Pair b = exact_pair({c.OUT}, seed + 2);
    for (Pair* p : {&x, &w, &b}) {
      p->cpu.set_requires_grad(true);
      p->gpu.set_requires_grad(true);
    }
    Tensor yc = linear_relu(x.cpu, w.cpu, c.bias ? b.cpu : Tensor());
    Tensor yg = linear_relu(x.gpu, w.gpu, c.bias ? b.gpu : Tensor());
    REQUIRE(yg.is_cuda());
    CHECK(std::string(yg.grad_fn()->name) == "linear_relu");
    require_exact(yg, yc, "y");
    const std::vector<float> yv = yc.to_vector();
    CHECK(std::count(yv.begin(), yv.end(), 0.0f) > 0);  // the ReLU cut something
    Tensor g = exact_tensor(yc.shape(), seed + 3);
    yc.backward(g);
    yg.backward(g.to(gpu()));
    require_exact(x.gpu.grad(), x.cpu.grad(), "dx");
    require_exact(w.gpu.grad(), w.cpu.grad(), "dw");
    if (c.bias) require_exact(b.gpu.grad(), b.cpu.grad(), "db");

    Pair xr = random_pair({c.N, c.IN}, seed + 4), wr = random_pair({c.OUT, c.IN}, seed + 5);
    Pair br = random_pair({c.OUT}, seed + 6);
    Tensor yr = linear_relu(xr.gpu, wr.gpu, c.bias ? br.gpu : Tensor());
    // The reference: the bias as one more column of x against a column of w.
    std::vector<float> xa, wa;
    const auto xv = xr.cpu.to_vector(), wv = wr.cpu.to_vector(), bv = br.cpu.to_vector();
    for (int n = 0; n < c.N; ++n) {
      xa.insert(xa.end(), xv.begin() + int64_t{n} * c.IN, xv.begin() + int64_t{n + 1} * c.IN);
      xa.push_back(c.bias ? 1.0f : 0.0f);
    }
    for (int o = 0; o < c.OUT; ++o) {
      wa.insert(wa.end(), wv.begin() + int64_t{o} * c.IN, wv.begin() + int64_t{o + 1} * c.IN);
      wa.push_back(bv[o]);
    }
    Ref64 ref = gemm_ref64(k::gemm_params(false, true, c.N, c.OUT, c.IN + 1), xa.data(), wa.data(),
                           nullptr);
    for (double& v : ref.value) v = std::max(v, 0.0);
    require_ref64(yr, ref, c.IN + c.bias, "y (fp64 reference)");
  }
}
#endif  // SCRATCHNET_WITH_CUDA
