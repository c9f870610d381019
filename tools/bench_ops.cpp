// Benchmark cases: operands and per-pass kernel calls (see bench_ops.h).
#include "tools/bench_ops.h"

#include <algorithm>
#include <cstring>

#include "core/cuda.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/pool2d.h"
#include "kernels/sgd.h"
#include "kernels/softmax_ce.h"

namespace scratchnet::tools::bench {

namespace k = scratchnet::kernels;

// ---- cases ---------------------------------------------------------------------

namespace {

constexpr double F = sizeof(float);

Case conv_case(const k::Conv2dParams& p, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const int64_t nx = int64_t{p.N} * p.C * p.H * p.W, nw = int64_t{p.K} * p.C * p.R * p.S;
  const int64_t ny = int64_t{p.N} * p.K * p.P * p.Q, crs = int64_t{p.C} * p.R * p.S;
  const int64_t npq = int64_t{p.N} * p.P * p.Q;
  float *x = a.random(nx, seed), *w = a.random(nw, seed + 1), *b = a.random(p.K, seed + 2);
  float *y = a.zeros(ny), *dy = a.random(ny, seed + 3), *dx = a.zeros(nx);
  float *dw = a.zeros(nw), *db = a.zeros(p.K);
  [[maybe_unused]] void* ws = nullptr;
#ifdef SCRATCHNET_WITH_CUDA
  if (d.is_cuda()) ws = a.bytes(k::conv2d_workspace_bytes_cuda(p));
#endif
  const double flops = 2.0 * double(ny) * double(crs);
  Pass fwd{"fwd",
           flops,
           F * double(nx + nw + ny),
           nullptr,
           {{y, ny}},
           crs,
           true,
           k::gemm_params(false, false, p.K, int(npq), int(crs))};
  fwd.run = [=] {
    SN_BENCH_CALL(d, k::conv2d_forward_cpu(p, x, w, b, y),
                  k::conv2d_forward_cuda(p, x, w, b, y, ws, st));
  };
  Pass bd{"bwd_data",
          flops,
          F * double(ny + nw + 2 * nx),
          nullptr,
          {{dx, nx}},
          int64_t{p.K} * p.R * p.S,
          true,
          k::gemm_params(true, false, int(crs), int(npq), p.K)};
  bd.run = [=] {
    SN_BENCH_CALL(d, k::conv2d_backward_data_cpu(p, dy, w, dx),
                  k::conv2d_backward_data_cuda(p, dy, w, dx, ws, st));
  };
  Pass bw{"bwd_weight",
          flops,
          F * double(nx + ny + 2 * nw),
          nullptr,
          {{dw, nw}, {db, p.K}},
          npq,
          true,
          k::gemm_params(false, true, p.K, int(crs), int(npq))};
  bw.run = [=] {
    SN_BENCH_CALL(d, k::conv2d_backward_weight_cpu(p, x, dy, dw, db),
                  k::conv2d_backward_weight_cuda(p, x, dy, dw, db, ws, st));
  };
  c.passes = {fwd, bd, bw};
  return c;
}

Case linear_case(const k::LinearParams& p, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const int64_t nx = int64_t{p.N} * p.IN, nw = int64_t{p.OUT} * p.IN, ny = int64_t{p.N} * p.OUT;
  float *x = a.random(nx, seed), *w = a.random(nw, seed + 1), *b = a.random(p.OUT, seed + 2);
  float *y = a.zeros(ny), *dy = a.random(ny, seed + 3), *dx = a.zeros(nx);
  float *dw = a.zeros(nw), *db = a.zeros(p.OUT);
  [[maybe_unused]] void* ws = nullptr;
#ifdef SCRATCHNET_WITH_CUDA
  if (d.is_cuda()) ws = a.bytes(k::linear_workspace_bytes_cuda(p));
#endif
  const double flops = 2.0 * double(p.N) * p.IN * p.OUT;
  const auto g = linear_gemms(p);
  Pass fwd{"fwd", flops, F * double(nx + nw + ny), nullptr, {{y, ny}}, p.IN, true, g[0]};
  fwd.run = [=] {
    SN_BENCH_CALL(d, k::linear_forward_cpu(p, x, w, b, y),
                  k::linear_forward_cuda(p, x, w, b, y, ws, st));
  };
  Pass bd{"bwd_data", flops, F * double(ny + nw + 2 * nx), nullptr, {{dx, nx}}, p.OUT, true, g[1]};
  bd.run = [=] {
    SN_BENCH_CALL(d, k::linear_backward_data_cpu(p, dy, w, dx),
                  k::linear_backward_data_cuda(p, dy, w, dx, ws, st));
  };
  Pass bw{"bwd_weight", flops, F * double(nx + ny + 2 * nw), nullptr, {{dw, nw}, {db, p.OUT}}, p.N,
          true,         g[2]};
  bw.run = [=] {
    SN_BENCH_CALL(d, k::linear_backward_weight_cpu(p, x, dy, dw, db),
                  k::linear_backward_weight_cuda(p, x, dy, dw, db, st));
  };
  c.passes = {fwd, bd, bw};
  return c;
}

Case pool_case(const LayerShape& l, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const k::Pool2dParams p = l.pool;
  const int64_t nx = int64_t{p.N} * p.C * p.H * p.W, ny = int64_t{p.N} * p.C * p.P * p.Q;
  float *x = a.random(nx, seed), *y = a.zeros(ny), *dy = a.random(ny, seed + 1), *dx = a.zeros(nx);
  const int64_t win = int64_t{p.R} * p.S;
  if (l.kind == Kind::MaxPool) {
    auto* idx = static_cast<int32_t*>(a.bytes(static_cast<std::size_t>(ny) * sizeof(int32_t)));
    Pass fwd{"fwd", 0, F * double(nx + 2 * ny), nullptr, {{y, ny}}, win};
    fwd.run = [=] {
      SN_BENCH_CALL(d, k::max_pool2d_forward_cpu(p, x, y, idx),
                    k::max_pool2d_forward_cuda(p, x, y, idx, st));
    };
    Pass bwd{"bwd", 0, F * double(2 * ny + 2 * nx), nullptr, {{dx, nx}}, win};
    bwd.run = [=] {
      SN_BENCH_CALL(d, k::max_pool2d_backward_cpu(p, dy, idx, dx),
                    k::max_pool2d_backward_cuda(p, dy, idx, dx, st));
    };
    c.passes = {fwd, bwd};
  } else {
    Pass fwd{"fwd", 0, F * double(nx + ny), nullptr, {{y, ny}}, win};
    fwd.run = [=] {
      SN_BENCH_CALL(d, k::avg_pool2d_forward_cpu(p, x, y), k::avg_pool2d_forward_cuda(p, x, y, st));
    };
    Pass bwd{"bwd", 0, F * double(ny + 2 * nx), nullptr, {{dx, nx}}, win};
    bwd.run = [=] {
      SN_BENCH_CALL(d, k::avg_pool2d_backward_cpu(p, dy, dx),
                    k::avg_pool2d_backward_cuda(p, dy, dx, st));
    };
    c.passes = {fwd, bwd};
  }
  return c;
}

Case gap_case(int planes, int hw, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const int64_t nx = int64_t{planes} * hw;
  float *x = a.random(nx, seed), *y = a.zeros(planes), *dy = a.random(planes, seed + 1);
  float* dx = a.zeros(nx);
  Pass fwd{"fwd", 0, F * double(nx + planes), nullptr, {{y, planes}}, hw};
  fwd.run = [=] {
    SN_BENCH_CALL(d, k::global_avg_pool_forward_cpu(planes, hw, x, y),
                  k::global_avg_pool_forward_cuda(planes, hw, x, y, st));
  };
  Pass bwd{"bwd", 0, F * double(planes + 2 * nx), nullptr, {{dx, nx}}, 1};
  bwd.run = [=] {
    SN_BENCH_CALL(d, k::global_avg_pool_backward_cpu(planes, hw, dy, dx),
                  k::global_avg_pool_backward_cuda(planes, hw, dy, dx, st));
  };
  c.passes = {fwd, bwd};
  return c;
}

Case bn_case(const k::BatchNormParams& p, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const int64_t n = int64_t{p.N} * p.C * p.HW;
  float *x = a.random(n, seed), *gamma = a.random(p.C, seed + 1, 0.5f, 1.5f);
  float *beta = a.random(p.C, seed + 2), *y = a.zeros(n), *dy = a.random(n, seed + 3);
  float *mean = a.zeros(p.C), *invstd = a.zeros(p.C), *rmean = a.zeros(p.C);
  float *rvar = a.random(p.C, seed + 4, 0.5f, 1.5f), *dx = a.zeros(n);
  float *dgamma = a.zeros(p.C), *dbeta = a.zeros(p.C);
  [[maybe_unused]] void* ws = nullptr;
#ifdef SCRATCHNET_WITH_CUDA
  if (d.is_cuda()) ws = a.bytes(k::batch_norm_workspace_bytes_cuda(p));
#endif
  const int64_t m = int64_t{p.N} * p.HW;
  // Running statistics change with every call; they are left out of the comparison.
  Pass fwd{"fwd", 0, F * double(2 * n), nullptr, {{y, n}, {mean, p.C}, {invstd, p.C}}, m};
  fwd.run = [=] {
    SN_BENCH_CALL(
        d, k::batch_norm_forward_train_cpu(p, x, gamma, beta, y, mean, invstd, rmean, rvar),
        k::batch_norm_forward_train_cuda(p, x, gamma, beta, y, mean, invstd, rmean, rvar, ws, st));
  };
  Pass bwd{"bwd", 0, F * double(4 * n), nullptr, {{dx, n}, {dgamma, p.C}, {dbeta, p.C}}, m};
  bwd.run = [=] {
    SN_BENCH_CALL(
        d,
        k::batch_norm_backward_cpu(p, true, x, nullptr, dy, gamma, mean, invstd, dx, dgamma, dbeta),
        k::batch_norm_backward_cuda(p, true, x, nullptr, dy, gamma, mean, invstd, dx, dgamma, dbeta,
                                    ws, st));
  };
  c.passes = {fwd, bwd};
  return c;
}

Case pointwise_case(Kind kind, int64_t n, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  float *x = a.random(n, seed), *y = a.zeros(n), *dy = a.random(n, seed + 1), *dx = a.zeros(n);
  Pass fwd{"fwd", 0, F * double(2 * n), nullptr, {{y, n}}, 1};
  Pass bwd{"bwd", 0, F * double(4 * n), nullptr, {{dx, n}}, 1};
  if (kind == Kind::ReLU) {
    fwd.run = [=] {
      SN_BENCH_CALL(d, k::relu_forward_cpu(n, x, y), k::relu_forward_cuda(n, x, y, st));
    };
    bwd.run = [=] {
      SN_BENCH_CALL(d, k::relu_backward_cpu(n, y, dy, dx), k::relu_backward_cuda(n, y, dy, dx, st));
    };
  } else if (kind == Kind::Sigmoid) {
    fwd.run = [=] {
      SN_BENCH_CALL(d, k::sigmoid_forward_cpu(n, x, y), k::sigmoid_forward_cuda(n, x, y, st));
    };
    bwd.run = [=] {
      SN_BENCH_CALL(d, k::sigmoid_backward_cpu(n, y, dy, dx),
                    k::sigmoid_backward_cuda(n, y, dy, dx, st));
    };
  } else if (kind == Kind::Add) {
    // The residual sum; its backward is one accumulate per input.
    fwd.bytes = F * double(3 * n);
    fwd.run = [=] {
      SN_BENCH_CALL(d, k::add_forward_cpu(n, x, dy, y), k::add_forward_cuda(n, x, dy, y, st));
    };
    bwd.bytes = F * double(3 * n);
    bwd.run = [=] {
      SN_BENCH_CALL(d, k::accumulate_cpu(n, dy, dx), k::accumulate_cuda(n, dy, dx, st));
    };
  } else if (kind == Kind::Dropout) {
    const float prob = 0.5f;
    bwd.bytes = F * double(3 * n);
    fwd.run = [=] {
      SN_BENCH_CALL(d, k::dropout_forward_cpu(n, prob, 42, 7, x, y),
                    k::dropout_forward_cuda(n, prob, 42, 7, x, y, st));
    };
    bwd.run = [=] {
      SN_BENCH_CALL(d, k::dropout_backward_cpu(n, prob, 42, 7, dy, dx),
                    k::dropout_backward_cuda(n, prob, 42, 7, dy, dx, st));
    };
  } else {
    throw ValueError(std::string("bench: no pointwise case for ") + kind_name(kind));
  }
  c.passes = {fwd, bwd};
  return c;
}

Case ce_case(int N, int C, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const k::CrossEntropyParams p = k::cross_entropy_params(N, C);
  const int64_t n = int64_t{N} * C;
  float *logits = a.random(n, seed, -3.0f, 3.0f), *loss = a.zeros(1), *probs = a.zeros(n);
  float *dloss = a.random(1, seed + 1, 1.0f, 1.0f), *dlogits = a.zeros(n);
  int32_t* labels = a.labels(N, C, seed + 2);
  Pass fwd{"fwd", 0, F * double(2 * n + N), nullptr, {{loss, 1}, {probs, n}}, n};
  fwd.run = [=] {
    SN_BENCH_CALL(d, k::softmax_ce_forward_cpu(p, logits, labels, loss, probs),
                  k::softmax_ce_forward_cuda(p, logits, labels, loss, probs, st));
  };
  Pass bwd{"bwd", 0, F * double(3 * n + N), nullptr, {{dlogits, n}}, 1};
  bwd.run = [=] {
    SN_BENCH_CALL(d, k::softmax_ce_backward_cpu(p, probs, labels, dloss, dlogits),
                  k::softmax_ce_backward_cuda(p, probs, labels, dloss, dlogits, st));
  };
  c.passes = {fwd, bwd};
  return c;
}

Case sgd_case(int64_t n, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  float *param = a.random(n, seed), *grad = a.random(n, seed + 1), *buf = a.zeros(n);
  k::SgdParams sp;  // the course's SGD: lr 0.01, no momentum, no weight decay
  sp.lr = 0.01f;
  Pass step{"step", 0, F * double(3 * n), nullptr, {{param, n}}, 1};
  step.run = [=] {
    SN_BENCH_CALL(d, k::sgd_step_cpu(n, sp, param, grad, buf),
                  k::sgd_step_cuda(n, sp, param, grad, buf, st));
  };
  c.passes = {step};
  return c;
}

}  // namespace

std::array<k::GemmParams, 3> linear_gemms(const k::LinearParams& p) {
  return {k::gemm_params(false, true, p.N, p.OUT, p.IN),
          k::gemm_params(false, false, p.N, p.IN, p.OUT, 1.0f, 1.0f),
          k::gemm_params(true, false, p.OUT, p.IN, p.N, 1.0f, 1.0f)};
}

Case make_case(const LayerShape& l, Device d, uint64_t seed) {
  switch (l.kind) {
    case Kind::Conv:
      return conv_case(l.conv, d, seed);
    case Kind::Linear:
      return linear_case(l.linear, d, seed);
    case Kind::MaxPool:
    case Kind::AvgPool:
      return pool_case(l, d, seed);
    case Kind::GlobalAvgPool:
      return gap_case(l.planes, l.hw, d, seed);
    case Kind::BatchNorm:
      return bn_case(l.bn, d, seed);
    case Kind::CrossEntropy:
      return ce_case(static_cast<int>(l.n), l.hw, d, seed);
    case Kind::Sgd:
      return sgd_case(l.n, d, seed);
    default:
      return pointwise_case(l.kind, l.n, d, seed);
  }
}

Case make_gemm_case(const k::GemmParams& p, Device d, uint64_t seed) {
  Case c{std::make_unique<Arena>(d), {}};
  Arena& a = *c.arena;
  const int64_t na = int64_t{p.M} * p.K, nb = int64_t{p.K} * p.N, nc = int64_t{p.M} * p.N;
  float *A = a.random(na, seed), *B = a.random(nb, seed + 1), *C = a.zeros(nc);
  Pass g{"fwd",
         2.0 * double(p.M) * p.N * p.K,
         F * double(na + nb + (p.beta != 0 ? 2 : 1) * nc),
         nullptr,
         {{C, nc}},
         p.K,
         true,
         p};
  g.run = [=] { SN_BENCH_CALL(d, k::gemm_cpu(p, A, B, C), k::gemm_cuda(p, A, B, C, st)); };
  c.passes = {g};
  return c;
}

LayerShape small_batch(const LayerShape& l) {
  LayerShape s = l;
  constexpr int N = 2;
  switch (l.kind) {
    case Kind::Conv: {
      const auto& p = l.conv;
      s.conv = k::conv2d_params(N, p.C, p.H, p.W, p.K, p.R, p.S, p.stride, p.pad);
      break;
    }
    case Kind::Linear:
      s.linear = k::linear_params(N, l.linear.IN, l.linear.OUT);
      break;
    case Kind::MaxPool:
    case Kind::AvgPool: {
      const auto& p = l.pool;
      s.pool = k::pool2d_params(l.kind == Kind::MaxPool ? "max_pool2d" : "avg_pool2d", N, p.C, p.H,
                                p.W, p.R, p.S, p.stride, p.pad);
      break;
    }
    case Kind::BatchNorm:
      s.bn.N = N;
      break;
    case Kind::GlobalAvgPool:
      s.planes = std::min(l.planes, 1024);
      break;
    case Kind::CrossEntropy:
      s.n = std::min<int64_t>(l.n, 64);
      break;
    default:
      s.n = std::min<int64_t>(l.n, int64_t{1} << 20);  // pointwise: size does not matter
  }
  return s;
}

}  // namespace scratchnet::tools::bench
