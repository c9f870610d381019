// Pointwise ops on the GPU over n contiguous floats (see elementwise.h), one
// grid-stride loop each; the per-element rule is a small functor (the build
// has no --extended-lambda). Backward passes take the forward output y.
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

template <typename F>
__global__ void pointwise_kernel(int64_t n, F f) {
  for (int64_t i = global_tid(); i < n; i += grid_stride()) f(i);
}

template <typename F>
void launch(const char* name, int64_t n, Stream stream, F f) {
  if (n <= 0) return;
  SN_LAUNCH(name, pointwise_kernel<F>, grid_for(n), kThreads, 0, stream, n, f);
}

struct ReluForward {
  const float* x;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }
};
struct ReluBackward {
  const float* y;
  const float* dy;
  float* dx;
  bool write;  // dx = g (dx uninitialised), else dx += g
  __device__ void operator()(int64_t i) const {
    const float g = y[i] > 0.0f ? dy[i] : 0.0f;
    dx[i] = write ? g : dx[i] + g;
  }
};
// 1 / (1 + e^-x): e^-x -> inf gives 0, -> 0 gives 1; never NaN for finite x.
struct SigmoidForward {
  const float* x;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] = 1.0f / (1.0f + expf(-x[i])); }
};
struct SigmoidBackward {
  const float* y;
  const float* dy;
  float* dx;
  bool write;  // dx = g (dx uninitialised), else dx += g
  __device__ void operator()(int64_t i) const {
    const float g = dy[i] * y[i] * (1.0f - y[i]);
    dx[i] = write ? g : dx[i] + g;
  }
};
struct Add {
  const float* a;
  const float* b;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] = a[i] + b[i]; }
};
struct AddRelu {
  const float* a;
  const float* b;
  float* y;
  __device__ void operator()(int64_t i) const {
    const float v = a[i] + b[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
};
// da and db may be null, or one buffer (add_relu(x, x), then never written
// fresh): each thread owns element i of both, so the two += run in order.
struct AddReluBackward {
  const float* y;
  const float* dy;
  float* da;
  float* db;
  bool write_a, write_b;  // = instead of += (an uninitialised buffer)
  __device__ void operator()(int64_t i) const {
    const float g = y[i] > 0.0f ? dy[i] : 0.0f;
    if (da) da[i] = write_a ? g : da[i] + g;
    if (db) db[i] = write_b ? g : db[i] + g;
  }
};
struct Accumulate {
  const float* x;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] += x[i]; }
};
struct Fill {
  float value;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] = value; }
};

}  // namespace

void relu_forward_cuda(int64_t n, const float* x, float* y, Stream stream) {
  launch("relu_forward", n, stream, ReluForward{x, y});
}
void relu_backward_cuda(int64_t n, const float* y, const float* dy, float* dx, Stream stream,
                        bool write) {
  launch("relu_backward", n, stream, ReluBackward{y, dy, dx, write});
}
void sigmoid_forward_cuda(int64_t n, const float* x, float* y, Stream stream) {
  launch("sigmoid_forward", n, stream, SigmoidForward{x, y});
}
void sigmoid_backward_cuda(int64_t n, const float* y, const float* dy, float* dx, Stream stream,
                           bool write) {
  launch("sigmoid_backward", n, stream, SigmoidBackward{y, dy, dx, write});
}
void add_forward_cuda(int64_t n, const float* a, const float* b, float* y, Stream stream) {
  launch("add_forward", n, stream, Add{a, b, y});
}
void add_relu_forward_cuda(int64_t n, const float* a, const float* b, float* y, Stream stream) {
  launch("add_relu_forward", n, stream, AddRelu{a, b, y});
}
void add_relu_backward_cuda(int64_t n, const float* y, const float* dy, float* da, float* db,
                            Stream stream, bool write_a, bool write_b) {
  launch("add_relu_backward", n, stream, AddReluBackward{y, dy, da, db, write_a, write_b});
}
void accumulate_cuda(int64_t n, const float* x, float* y, Stream stream) {
  launch("accumulate", n, stream, Accumulate{x, y});
}
void fill_cuda(int64_t n, float value, float* y, Stream stream) {
  launch("fill", n, stream, Fill{value, y});
}

}  // namespace scratchnet::kernels
