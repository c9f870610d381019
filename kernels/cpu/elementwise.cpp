// CPU reference for the pointwise ops over n contiguous floats (relu,
// sigmoid, add, add_relu, accumulate, fill). Each element is independent, so the loops
// are split across OpenMP threads and vectorised; results do not depend on
// the thread count. Small tensors stay on one thread: spawning a team costs
// more than the work. Sigmoid has a plain variant (std::exp, one thread), the
// tests' oracle for the vectorised one.
#include "kernels/elementwise.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace scratchnet::kernels {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

void relu_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward_cpu(int64_t n, const float* y, const float* dy, float* dx, bool write) {
  if (write) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    return;
  }
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

// e^t in plain float arithmetic the compiler vectorises (std::exp is a
// scalar libm call, 3 ns an element, the largest item of LeNet's forward).
// Cephes' expf: t = k ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial
// (~1 ulp), 2^k built in the exponent bits. Sigmoid needs no more range than
// [-88, 89]: below, e^t is 0 (k = -127) and 1 + e^t rounds to 1 long before;
// above 88.4, k = 128 makes 2^k (and so e^t) +inf, and 1 / (1 + inf) = 0 as
// with std::exp. A NaN passes the clamps (comparisons with it are false) and
// comes out NaN.
inline float exp_for_sigmoid(float t) {
  t = t < -88.0f ? -88.0f : t;
  t = t > 89.0f ? 89.0f : t;
  // Adding 1.5 * 2^23 rounds t log2(e) to an integer k, left in the low
  // mantissa bits (two's complement) of km: no float-to-int conversion.
  const float magic = 12582912.0f;
  const float km = t * 1.44269504088896341f + magic;
  const float k = km - magic;
  uint32_t kbits;
  std::memcpy(&kbits, &km, sizeof kbits);
  // ln 2 in two parts: k * 0.693359375 is exact for |k| <= 2^9.
  float r = t - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  const float z = r * r;
  float e = 1.9875691500e-4f;
  e = e * r + 1.3981999507e-3f;
  e = e * r + 8.3334519073e-3f;
  e = e * r + 4.1665795894e-2f;
  e = e * r + 1.6666665459e-1f;
  e = e * r + 5.0000001201e-1f;
  e = e * z + r + 1.0f;
  const uint32_t sbits = (kbits - 0x4B400000u + 127u) << 23;  // 2^k: k + 127 in [0, 255]
  float scale;
  std::memcpy(&scale, &sbits, sizeof scale);
  return e * scale;
}

void sigmoid_forward_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + exp_for_sigmoid(-x[i]));
}

void sigmoid_forward_cpu_plain(int64_t n, const float* x, float* y) {
  // 1 / (1 + e^-x) is safe at both ends in float: e^-x overflows to inf for
  // very negative x and the quotient correctly becomes 0.
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx, bool write) {
  if (write) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
    return;
  }
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

void add_forward_cpu(int64_t n, const float* a, const float* b, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

// The same float operations as relu(add(a, b)): the sum, then the clamp.
void add_relu_forward_cpu(int64_t n, const float* a, const float* b, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = a[i] + b[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

// One loop per operand: da and db may be the same buffer (add_relu(x, x)).
void add_relu_backward_cpu(int64_t n, const float* y, const float* dy, float* da, float* db,
                           bool write_a, bool write_b) {
  if (da) relu_backward_cpu(n, y, dy, da, write_a);
  if (db) relu_backward_cpu(n, y, dy, db, write_b);
}

void accumulate_cpu(int64_t n, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void fill_cpu(int64_t n, float value, float* y) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = value;
}

}  // namespace scratchnet::kernels
