// CPU reference for the pointwise ops over n contiguous floats (relu,
// sigmoid, add, add_relu, accumulate, fill). Each element is independent, so the loops
// are split across OpenMP threads and vectorised; results do not depend on
// the thread count. Small tensors stay on one thread: spawning a team costs
// more than the work.
#include "kernels/elementwise.h"

#include <cmath>

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

void sigmoid_forward_cpu(int64_t n, const float* x, float* y) {
  // 1 / (1 + e^-x) is safe at both ends in float: e^-x overflows to inf for
  // very negative x and the quotient correctly becomes 0.
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx) {
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
