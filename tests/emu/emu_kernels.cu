// Kernels for tests/emu/test_emu.cpp (see emu_kernels.h).
#include "kernels/cuda/launch.cuh"
#include "tests/emu/emu_kernels.h"

namespace emutest {

namespace {

constexpr unsigned kFull = 0xffffffffu;

__global__ void neighbour_kernel(const float* in, float* out, int n, bool barrier) {
  __shared__ float s[1024];
  const int t = threadIdx.x;
  s[t] = in[t];
  if (barrier) __syncthreads();
  if (t + 1 < n) out[t] = s[t + 1];
}

__global__ void broadcast_kernel(float* out) {
  __shared__ float v;
  if (threadIdx.x == 0) v = 42.0f;
  out[threadIdx.x] = v;
}

__global__ void shared_probe_kernel(float* out, bool write) {
  __shared__ float s[1024];
  if (write)
    s[threadIdx.x] = 1.0f;
  else
    out[threadIdx.x] = s[threadIdx.x];
}

__global__ void warp_sum_kernel(const float* in, float* out, int lanes) {
  float v = in[threadIdx.x];
  for (int o = lanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = v;
}

__global__ void half_warp_sum_kernel(const float* in, float* out) {
  float v = in[threadIdx.x];
  for (unsigned o = 8; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o, 16);
  out[threadIdx.x] = __shfl_sync(kFull, v, 0, 16);
}

__global__ void votes_kernel(unsigned* out) {
  const unsigned t = threadIdx.x + blockDim.x * threadIdx.y;
  const int pred = threadIdx.y == 1;
  const unsigned ballot = __ballot_sync(kFull, pred);
  const int any = __any_sync(kFull, pred), all = __all_sync(kFull, pred);
  if (t % 32 == 0) {
    out[3 * (t / 32)] = ballot;
    out[3 * (t / 32) + 1] = static_cast<unsigned>(any);
    out[3 * (t / 32) + 2] = static_cast<unsigned>(all);
  }
}

__global__ void ids_kernel(int* out) {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  int* o = out + 9 * (b * threads + t);
  o[0] = t;
  o[1] = b;
  o[2] = t % warpSize;
  o[3] = threadIdx.x;
  o[4] = threadIdx.y;
  o[5] = threadIdx.z;
  o[6] = blockIdx.x;
  o[7] = blockIdx.y;
  o[8] = blockIdx.z;
}

__global__ void count_kernel(int* counter) {
  atomicAdd(counter, 1);
}

__global__ void bad_mask_kernel(float* out) {
  out[threadIdx.x] = __shfl_sync(0xfffffffeu, 1.0f, 1);
}

__global__ void deadlock_kernel(float* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_sync(kFull, 1.0f, 20);
}

__global__ void early_exit_kernel(float* out) {
  __shared__ float s;
  if (threadIdx.x >= 32) return;
  if (threadIdx.x == 0) s = 7.0f;
  __syncthreads();
  out[threadIdx.x] = s;
}

__global__ void empty_kernel() {}

__global__ void scale_add_kernel(float* y, const float* x, float a, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * y[i] + x[i];
}

}  // namespace

void neighbour(const float* in, float* out, int n, bool barrier) {
  SN_LAUNCH("neighbour_kernel", neighbour_kernel, 1, n, 0, nullptr, in, out, n, barrier);
}
void broadcast_without_barrier(float* out, int n) {
  SN_LAUNCH("broadcast_kernel", broadcast_kernel, 1, n, 0, nullptr, out);
}
void shared_probe(float* out, int n, bool write) {
  SN_LAUNCH("shared_probe_kernel", shared_probe_kernel, 1, n, 0, nullptr, out, write);
}
void warp_sum(const float* in, float* out, int n, int lanes) {
  SN_LAUNCH("warp_sum_kernel", warp_sum_kernel, 1, n, 0, nullptr, in, out, lanes);
}
void half_warp_sum(const float* in, float* out, int n) {
  SN_LAUNCH("half_warp_sum_kernel", half_warp_sum_kernel, 1, n, 0, nullptr, in, out);
}
void votes(unsigned* out) {
  SN_LAUNCH("votes_kernel", votes_kernel, 1, dim3(16, 4), 0, nullptr, out);
}
void ids(int* out) {
  SN_LAUNCH("ids_kernel", ids_kernel, dim3(2, 3), dim3(4, 2, 3), 0, nullptr, out);
}
void count_threads(int* counter, int blocks, int threads) {
  SN_LAUNCH("count_kernel", count_kernel, blocks, threads, 0, nullptr, counter);
}
void shuffle_without_own_lane(float* out) {
  SN_LAUNCH("bad_mask_kernel", bad_mask_kernel, 1, 32, 0, nullptr, out);
}
void deadlock(float* out) {
  SN_LAUNCH("deadlock_kernel", deadlock_kernel, 1, 32, 0, nullptr, out);
}
void early_exit_then_barrier(float* out, int n) {
  SN_LAUNCH("early_exit_kernel", early_exit_kernel, 1, n, 0, nullptr, out);
}
void empty(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
  SN_LAUNCH("empty_kernel", empty_kernel, dim3(gx, gy, gz), dim3(bx, by, bz), 0, nullptr);
}

void scale_add(float* y, const float* x, float a, int n, CUstream_st* stream) {
  SN_LAUNCH("scale_add_kernel", scale_add_kernel, (n + 127) / 128, 128, 0, stream, y, x, a, n);
}

}  // namespace emutest
