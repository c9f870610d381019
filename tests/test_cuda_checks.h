// Checks shared by the [cuda] kernel tests (test_cuda_conv.cpp,
// test_cuda_shapes.cpp): one conv2d, linear, pooling or batch-norm layer shape
// run through the CUDA kernels and compared with the CPU reference under the
// tolerance rule of test_cuda_helpers.h.
#pragma once
#ifdef SCRATCHNET_WITH_CUDA
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cuda.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"
#include "kernels/pool2d.h"
#include "test_cuda_helpers.h"

namespace scratchnet::cudatest {

namespace k = scratchnet::kernels;

enum class Data {
  Exact,  // integers in [-2, 2]: GPU == CPU reference, bit for bit (rule 1)
  Fp64,   // uniform in [-1, 1): GPU vs the fp64 reference (rule 2)
};

inline Pair data_pair(Data d, const Shape& shape, uint64_t seed) {
  return d == Data::Exact ? exact_pair(shape, seed) : random_pair(shape, seed);
}

inline Tensor workspace_for(const k::Conv2dParams& p) {
  const auto bytes = static_cast<int64_t>(k::conv2d_workspace_bytes_cuda(p));
  return Tensor::empty({std::max<int64_t>(bytes, 1)}, gpu(), DType::U8);
}

inline Tensor workspace_for(const k::LinearParams& p) {
  const auto bytes = static_cast<int64_t>(k::linear_workspace_bytes_cuda(p));
  return Tensor::empty({std::max<int64_t>(bytes, 1)}, gpu(), DType::U8);
}

// Forward (output poisoned first), data gradient and weight + bias gradient
// (accumulated into existing values) of one conv2d shape.
inline void check_conv(const k::Conv2dParams& p, bool bias, uint64_t seed, Data data) {
  INFO("conv2d N=" << p.N << " C=" << p.C << " H=" << p.H << " W=" << p.W << " K=" << p.K
                   << " R=" << p.R << " S=" << p.S << " stride=" << p.stride << " pad=" << p.pad
                   << " bias=" << bias
                   << (data == Data::Exact ? " (exact data)" : " (fp64 reference)"));
  Pair x = data_pair(data, {p.N, p.C, p.H, p.W}, seed);
  Pair w = data_pair(data, {p.K, p.C, p.R, p.S}, seed + 1);
  Pair b = data_pair(data, {p.K}, seed + 2);
  Tensor ws = workspace_for(p);
  auto stream = cuda::stream();
  const float* bc = bias ? b.cpu.data<float>() : nullptr;
  const double L_y = double(p.C) * p.R * p.S + 1, L_dx = double(p.K) * p.R * p.S + 1;
  const double L_dw = double(p.N) * p.P * p.Q + 1;

  Tensor y_gpu = poisoned({p.N, p.K, p.P, p.Q});
  k::conv2d_forward_cuda(p, x.gpu.data<float>(), w.gpu.data<float>(),
                         bias ? b.gpu.data<float>() : nullptr, y_gpu.data<float>(),
                         ws.data<uint8_t>(), stream);
  if (data == Data::Exact) {
    Tensor y_cpu = Tensor::zeros({p.N, p.K, p.P, p.Q});
    k::conv2d_forward_cpu(p, x.cpu.data<float>(), w.cpu.data<float>(), bc, y_cpu.data<float>());
    require_exact(y_gpu, y_cpu, "y");
  } else {
    require_ref64(y_gpu, conv2d_forward_ref64(p, x.cpu.data<float>(), w.cpu.data<float>(), bc), L_y,
                  "y");
  }

  Pair dy = data_pair(data, {p.N, p.K, p.P, p.Q}, seed + 3);
  Pair dx = data_pair(data, {p.N, p.C, p.H, p.W}, seed + 4);  // accumulated into
  const Tensor dx0 = dx.cpu.clone();
  k::conv2d_backward_data_cuda(p, dy.gpu.data<float>(), w.gpu.data<float>(), dx.gpu.data<float>(),
                               ws.data<uint8_t>(), stream);
  if (data == Data::Exact) {
    k::conv2d_backward_data_cpu(p, dy.cpu.data<float>(), w.cpu.data<float>(), dx.cpu.data<float>());
    require_exact(dx.gpu, dx.cpu, "dx");
  } else {
    require_ref64(
        dx.gpu,
        conv2d_backward_data_ref64(p, dy.cpu.data<float>(), w.cpu.data<float>(), dx0.data<float>()),
        L_dx, "dx");
  }

  Pair dw = data_pair(data, {p.K, p.C, p.R, p.S}, seed + 5);
  Pair db = data_pair(data, {p.K}, seed + 6);
  const Tensor dw0 = dw.cpu.clone(), db0 = db.cpu.clone();
  k::conv2d_backward_weight_cuda(p, x.gpu.data<float>(), dy.gpu.data<float>(), dw.gpu.data<float>(),
                                 bias ? db.gpu.data<float>() : nullptr, ws.data<uint8_t>(), stream);
  if (data == Data::Exact) {
    k::conv2d_backward_weight_cpu(p, x.cpu.data<float>(), dy.cpu.data<float>(),
                                  dw.cpu.data<float>(), bias ? db.cpu.data<float>() : nullptr);
    require_exact(dw.gpu, dw.cpu, "dw");
    require_exact(db.gpu, db.cpu, "db");  // unchanged when !bias: still equal
  } else {
    require_ref64(dw.gpu,
                  conv2d_backward_weight_ref64(p, x.cpu.data<float>(), dy.cpu.data<float>(),
                                               dw0.data<float>()),
                  L_dw, "dw");
    if (bias)
      require_ref64(db.gpu, conv2d_backward_bias_ref64(p, dy.cpu.data<float>(), db0.data<float>()),
                    L_dw, "db");
    else
      require_exact(db.gpu, db0, "db untouched");
  }
}

// Linear forward, data gradient and weight + bias gradient with integer data:
// bit for bit (rule 1).
inline void check_linear_exact(const k::LinearParams& p, uint64_t seed) {
  INFO("linear N=" << p.N << " IN=" << p.IN << " OUT=" << p.OUT << " (exact data)");
  auto s = cuda::stream();
  Pair x = exact_pair({p.N, p.IN}, seed), w = exact_pair({p.OUT, p.IN}, seed + 1);
  Pair b = exact_pair({p.OUT}, seed + 2);
  Tensor y = poisoned({p.N, p.OUT}), yc = Tensor::zeros({p.N, p.OUT});
  Tensor ws = workspace_for(p);
  k::linear_forward_cuda(p, x.gpu.data<float>(), w.gpu.data<float>(), b.gpu.data<float>(),
                         y.data<float>(), ws.data<uint8_t>(), s);
  k::linear_forward_cpu(p, x.cpu.data<float>(), w.cpu.data<float>(), b.cpu.data<float>(),
                        yc.data<float>());
  require_exact(y, yc, "y");
  Pair dy = exact_pair({p.N, p.OUT}, seed + 3), dx = exact_pair({p.N, p.IN}, seed + 4);
  k::linear_backward_data_cuda(p, dy.gpu.data<float>(), w.gpu.data<float>(), dx.gpu.data<float>(),
                               ws.data<uint8_t>(), s);
  k::linear_backward_data_cpu(p, dy.cpu.data<float>(), w.cpu.data<float>(), dx.cpu.data<float>());
  require_exact(dx.gpu, dx.cpu, "dx");
  Pair dw = exact_pair({p.OUT, p.IN}, seed + 5), db = exact_pair({p.OUT}, seed + 6);
  k::linear_backward_weight_cuda(p, x.gpu.data<float>(), dy.gpu.data<float>(), dw.gpu.data<float>(),
                                 db.gpu.data<float>(), s);
  k::linear_backward_weight_cpu(p, x.cpu.data<float>(), dy.cpu.data<float>(), dw.cpu.data<float>(),
                                db.cpu.data<float>());
  require_exact(dw.gpu, dw.cpu, "dw");
  require_exact(db.gpu, db.cpu, "db");
}

// Max or average pooling, forward and backward, with integer data (ties in
// max windows; exact sums): bit for bit, except average-pool backward with a
// window whose size is not a power of two (dy / (R*S) rounds): rule 2.
inline void check_pool_exact(const k::Pool2dParams& p, bool max, uint64_t seed) {
  INFO((max ? "max" : "avg") << " pool N=" << p.N << " C=" << p.C << " H=" << p.H << " W=" << p.W
                             << " R=" << p.R << " stride=" << p.stride << " pad=" << p.pad);
  auto s = cuda::stream();
  const Shape in{p.N, p.C, p.H, p.W}, out{p.N, p.C, p.P, p.Q};
  Pair x = exact_pair(in, seed), dy = exact_pair(out, seed + 1), dx = exact_pair(in, seed + 2);
  const Tensor dx0 = dx.cpu.clone();
  Tensor y = poisoned(out), yc = Tensor::zeros(out);
  if (max) {
    Tensor arg = Tensor::empty(out, gpu(), DType::I32),
           argc = Tensor::zeros(out, Device::cpu(), DType::I32);
    k::max_pool2d_forward_cuda(p, x.gpu.data<float>(), y.data<float>(), arg.data<int32_t>(), s);
    k::max_pool2d_forward_cpu(p, x.cpu.data<float>(), yc.data<float>(), argc.data<int32_t>());
    require_exact(y, yc, "y");
    REQUIRE(arg.to_vector<int32_t>() == argc.to_vector<int32_t>());
    k::max_pool2d_backward_cuda(p, dy.gpu.data<float>(), arg.data<int32_t>(), dx.gpu.data<float>(),
                                s);
    k::max_pool2d_backward_cpu(p, dy.cpu.data<float>(), argc.data<int32_t>(), dx.cpu.data<float>());
    require_exact(dx.gpu, dx.cpu, "dx");
    return;
  }
  k::avg_pool2d_forward_cuda(p, x.gpu.data<float>(), y.data<float>(), s);
  k::avg_pool2d_forward_cpu(p, x.cpu.data<float>(), yc.data<float>());
  require_exact(y, yc, "y");
  k::avg_pool2d_backward_cuda(p, dy.gpu.data<float>(), dx.gpu.data<float>(), s);
  const int rs = p.R * p.S;
  if ((rs & (rs - 1)) == 0) {
    k::avg_pool2d_backward_cpu(p, dy.cpu.data<float>(), dx.cpu.data<float>());
    require_exact(dx.gpu, dx.cpu, "dx");
  } else {
    const double L = std::ceil(double(p.R) / p.stride) * std::ceil(double(p.S) / p.stride) + 1;
    require_ref64(dx.gpu, avg_pool_backward_ref64(p, dy.cpu.data<float>(), dx0.data<float>()), L,
                  "dx");
  }
}

// Global average pooling over planes of hw values: both sum in double and
// round once (rule 3).
inline void check_global_avg_pool(int planes, int hw, uint64_t seed) {
  INFO("global avg pool planes=" << planes << " hw=" << hw);
  auto s = cuda::stream();
  Pair x = random_pair({planes, hw}, seed), dy = random_pair({planes}, seed + 1),
       dx = random_pair({planes, hw}, seed + 2);
  Tensor y = poisoned({planes}), yc = Tensor::zeros({planes});
  k::global_avg_pool_forward_cuda(planes, hw, x.gpu.data<float>(), y.data<float>(), s);
  k::global_avg_pool_forward_cpu(planes, hw, x.cpu.data<float>(), yc.data<float>());
  require_ulps(y, yc, 0.0, "y");
  k::global_avg_pool_backward_cuda(planes, hw, dy.gpu.data<float>(), dx.gpu.data<float>(), s);
  k::global_avg_pool_backward_cpu(planes, hw, dy.cpu.data<float>(), dx.cpu.data<float>());
  require_ulps(dx.gpu, dx.cpu, 2.0, "dx");  // dx0 + dy / hw
}

// Batch norm training forward and backward, as in test_cuda_ops.cpp:
// statistics (one double rounded once on both sides) equal; y and dx float
// expressions whose operands have the sizes named (rule 3).
inline void check_batch_norm(const k::BatchNormParams& p, uint64_t seed) {
  INFO("batch norm N=" << p.N << " C=" << p.C << " HW=" << p.HW);
  auto s = cuda::stream();
  const Shape xs{p.N, p.C, p.HW};
  const float lo = 2.0f, hi = 4.0f;  // mean far from 0 against the spread
  Pair x = random_pair(xs, seed, lo, hi);
  Pair gamma = random_pair({p.C}, seed + 1, 0.5f, 1.5f), beta = random_pair({p.C}, seed + 2);
  Pair rm = random_pair({p.C}, seed + 3), rv = random_pair({p.C}, seed + 4, 0.5f, 2.0f);
  Tensor ws = Tensor::empty(
      {std::max<int64_t>(static_cast<int64_t>(k::batch_norm_workspace_bytes_cuda(p)), 1)}, gpu(),
      DType::U8);
  Tensor y = poisoned(xs), yc = Tensor::zeros(xs);
  Tensor mean = poisoned({p.C}), inv = poisoned({p.C}), meanc = Tensor::zeros({p.C}),
         invc = Tensor::zeros({p.C});
  k::batch_norm_forward_train_cuda(p, x.gpu.data<float>(), gamma.gpu.data<float>(),
                                   beta.gpu.data<float>(), y.data<float>(), mean.data<float>(),
                                   inv.data<float>(), rm.gpu.data<float>(), rv.gpu.data<float>(),
                                   ws.data<uint8_t>(), s);
  k::batch_norm_forward_train_cpu(p, x.cpu.data<float>(), gamma.cpu.data<float>(),
                                  beta.cpu.data<float>(), yc.data<float>(), meanc.data<float>(),
                                  invc.data<float>(), rm.cpu.data<float>(), rv.cpu.data<float>());
  require_exact(mean, meanc, "save_mean");  // one double rounded once on both sides
  require_exact(inv, invc, "save_invstd");
  require_ulps(rm.gpu, rm.cpu, 2.0, "running_mean");
  require_ulps(rv.gpu, rv.cpu, 2.0, "running_var");
  double max_inv = 0;
  for (float f : invc.to_vector()) max_inv = std::max(max_inv, double(f));
  require_ulps(y, yc, (hi - lo) * max_inv * 1.5 + 1.0, "y");  // m: |x - mean| scale + |beta|
  Pair dy = random_pair(xs, seed + 5), dx = random_pair(xs, seed + 6);
  Pair dg = random_pair({p.C}, seed + 7), db = random_pair({p.C}, seed + 8);
  k::batch_norm_backward_cuda(p, true, x.gpu.data<float>(), nullptr, dy.gpu.data<float>(),
                              gamma.gpu.data<float>(), meanc.to(gpu()).data<float>(),
                              invc.to(gpu()).data<float>(), dx.gpu.data<float>(),
                              dg.gpu.data<float>(), db.gpu.data<float>(), ws.data<uint8_t>(), s);
  k::batch_norm_backward_cpu(p, true, x.cpu.data<float>(), nullptr, dy.cpu.data<float>(),
                             gamma.cpu.data<float>(), meanc.data<float>(), invc.data<float>(),
                             dx.cpu.data<float>(), dg.cpu.data<float>(), db.cpu.data<float>());
  require_ulps(db.gpu, db.cpu, 1.0, "dbeta");
  require_ulps(dg.gpu, dg.cpu, 1.0, "dgamma");
  const double kmax = 1.5 * max_inv;
  require_ulps(dx.gpu, dx.cpu, kmax * (3.0 + (hi - lo) * max_inv) + 1.0, "dx");
}

}  // namespace scratchnet::cudatest
#endif  // SCRATCHNET_WITH_CUDA
