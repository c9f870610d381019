// Inverted dropout on the CPU: mask statistics, reproducibility from
// (seed, offset), scaling, eval identity, gradient, bad p; and [cuda], the
// offset read from a device word as a graph-captured step reads it.
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Kept values are x * (1 / (1 - p)) computed the same way here, so they must
// match exactly; the kept fraction of n draws must lie within 5 standard
// deviations sqrt(p (1 - p) / n) of 1 - p (fails by chance < 1e-6).
#include <cmath>

#include "core/autograd.h"
#include "core/cuda.h"
#include "core/ops.h"
#include "kernels/dropout.h"
#include "kernels/philox.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;

TEST_CASE("dropout keeps about 1 - p of the elements, scaled by 1 / (1 - p)", "[dropout]") {
  const int64_t n = 200003;  // not a multiple of 4: the last Philox block is partial
  Tensor x = random_tensor({n}, 3, 0.5f, 1.5f);  // never 0: 0 in y means dropped
  const auto xv = x.to_vector();
  for (float p : {0.1f, 0.5f, 0.8f}) {
    INFO("p = " << p);
    Generator gen(42);
    const auto y = dropout(x, p, true, gen).to_vector();
    const float scale = 1.0f / (1.0f - p);
    int64_t kept = 0, wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (y[i] != 0.0f) {
        ++kept;
        wrong += y[i] != xv[i] * scale;
      }
    }
    CHECK(wrong == 0);
    const double frac = static_cast<double>(kept) / n;
    CHECK(std::fabs(frac - (1.0 - p)) <= 5.0 * std::sqrt(p * (1.0 - p) / n));
  }
}

TEST_CASE("dropout mask is element i's Philox uniform < 1 - p", "[dropout]") {
  // The CUDA kernel follows the same rule; this pins the CPU's blocked loop
  // to philox_uniform's element mapping (including a partial last block).
  const int64_t n = 1001;
  const float p = 0.3f;
  const uint64_t seed = 0x1234567887654321ull, offset = 5;
  std::vector<float> ones(n, 1.0f), y(n);
  kernels::dropout_forward_cpu(n, p, seed, offset, ones.data(), y.data());
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = kernels::philox_uniform(seed, offset, i) < 1.0f - p;
    wrong += (y[i] != 0.0f) != keep;
  }
  CHECK(wrong == 0);
}

TEST_CASE("dropout is reproducible from seed and offset", "[dropout]") {
  Tensor x = random_tensor({4, 257}, 9, 0.5f, 1.5f);
  Generator a(7), b(7);
  const auto ya = dropout(x, 0.5f, true, a).to_vector();
  CHECK(dropout(x, 0.5f, true, b).to_vector() == ya);  // same seed, same offset
  CHECK(a.offset() == 1);
  const auto ya2 = dropout(x, 0.5f, true, a).to_vector();  // next stream
  CHECK(ya2 != ya);
  Generator c(8);
  CHECK(dropout(x, 0.5f, true, c).to_vector() != ya);  // other seed
}

TEST_CASE("dropout is the identity in eval mode and for p = 0", "[dropout]") {
  Tensor x = random_tensor({3, 5}, 2);
  Generator gen(1);
  CHECK(dropout(x, 0.5f, false, gen).to_vector() == x.to_vector());
  CHECK(dropout(x, 0.0f, true, gen).to_vector() == x.to_vector());
  CHECK(gen.offset() == 0);  // no stream drawn when nothing is dropped
}

TEST_CASE("dropout backward applies the forward mask", "[dropout]") {
  Tensor x = Tensor::full({1000}, 1.0f);
  x.set_requires_grad(true);
  Generator gen(3);
  Tensor y = dropout(x, 0.4f, true, gen);
  Tensor gy = random_tensor({1000}, 4, 0.5f, 1.5f);
  y.backward(gy);
  // With x = 1, y is mask / (1 - p): the gradient must be gy * y exactly.
  const auto yv = y.to_vector(), gyv = gy.to_vector(), gx = x.grad().to_vector();
  int64_t wrong = 0;
  for (int i = 0; i < 1000; ++i) wrong += gx[i] != gyv[i] * yv[i];
  CHECK(wrong == 0);

  // And finite differences with a fixed mask (a fresh generator per call).
  Tensor x2 = random_tensor({2, 3, 7}, 5);
  x2.set_requires_grad(true);
  check_gradient(
      [&] {
        Generator g(11);
        return dropout(x2, 0.3f, true, g);
      },
      x2, 1, "dropout dx");
}

TEST_CASE("dropout rejects p outside [0, 1)", "[dropout][errors]") {
  Tensor x = random_tensor({4}, 1);
  Generator gen(1);
  CHECK_THROWS_AS(dropout(x, 1.0f, true, gen), ValueError);
  CHECK_THROWS_WITH(dropout(x, 1.0f, true, gen),
                    Catch::Contains("dropout") && Catch::Contains("1.0"));
  CHECK_THROWS_AS(dropout(x, -0.1f, true, gen), ValueError);
  CHECK_THROWS_AS(dropout(x, std::nanf(""), true, gen), ValueError);
  CHECK_THROWS_AS(dropout(x, 1.5f, false, gen), ValueError);  // checked in eval mode too
}

#ifdef SCRATCHNET_WITH_CUDA
TEST_CASE("CUDA dropout can take its offset from a device word (graph replays)",
          "[cuda][dropout][graph]") {
  // What a captured step does (train/step_graph.h): the generator stores its
  // offset in a device word, the kernel adds its distance to it when it runs.
  const Device gpu = Device::cuda(0);
  const int64_t n = 1003;
  const float p = 0.4f;
  Tensor x = random_tensor({n}, 11, 0.5f, 1.5f);
  Tensor xg = x.to(gpu), word = Tensor::zeros({}, gpu, DType::I64);
  uint64_t* w = reinterpret_cast<uint64_t*>(word.data<int64_t>());
  Generator gen(1234, 70);
  gen.store_offset(w);
  Tensor y = Tensor::zeros({n}, gpu), yc = Tensor::zeros({n});
  kernels::dropout_forward_cuda(n, p, gen.seed(), 7, xg.data<float>(), y.data<float>(),
                                cuda::stream(), w);
  kernels::dropout_forward_cpu(n, p, 1234, 77, x.data<float>(), yc.data<float>());
  CHECK(y.to_vector<float>() == yc.to_vector<float>());
  Tensor dx = Tensor::zeros({n}, gpu), dxc = Tensor::zeros({n});
  kernels::dropout_backward_cuda(n, p, gen.seed(), 7, xg.data<float>(), dx.data<float>(),
                                 cuda::stream(), w);
  kernels::dropout_backward_cpu(n, p, 1234, 77, x.data<float>(), dxc.data<float>());
  CHECK(dx.to_vector<float>() == dxc.to_vector<float>());
  // Write mode (into NaN) reads the same device offset.
  Tensor dxw = Tensor::full({n}, std::nanf(""), gpu);
  kernels::dropout_backward_cuda(n, p, gen.seed(), 7, xg.data<float>(), dxw.data<float>(),
                                 cuda::stream(), w, true);
  CHECK(dxw.to_vector<float>() == dxc.to_vector<float>());

  // The generator hands out distances from the capture's first offset while
  // capturing, the offsets themselves otherwise; both advance its offset.
  gen.capture_offsets(w);
  const Generator::OffsetRef a = gen.next_offset_ref(), b = gen.next_offset_ref();
  CHECK((a.base == w && a.offset == 0 && b.base == w && b.offset == 1));
  gen.capture_offsets(nullptr);
  const Generator::OffsetRef c = gen.next_offset_ref();
  CHECK((c.base == nullptr && c.offset == 72));
  CHECK(gen.offset() == 73);
}
#endif
