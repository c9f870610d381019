// Fused softmax cross-entropy on the GPU (see softmax_ce.h), plus row argmax
// and the count of correct predictions.
// Forward is ONE block of 32 warps: warp w takes rows w, w+32, ...; within a
// row the lanes split the classes (max by shuffles; the exp-sum in double by a
// fixed shuffle tree), lane 0 adds the row loss to its warp's running double
// total, and thread 0 adds the 32 warp totals in order. No workspace, no
// atomics: the loss is bit-identical run to run. (N is a batch: a single block
// reads it in well under a millisecond.)
// Backward is elementwise: dlogits += (dloss / N) * (probs - onehot).
#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/softmax_ce.h"

namespace scratchnet::kernels {

namespace {

using namespace cudadetail;

constexpr int kCeThreads = 1024, kWarps = kCeThreads / 32;

__global__ void __launch_bounds__(kCeThreads)
    softmax_ce_forward_kernel(CrossEntropyParams p, const float* __restrict__ logits,
                              const int32_t* __restrict__ labels, float* __restrict__ loss,
                              float* __restrict__ probs) {
  __shared__ double warp_total[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double total = 0.0;  // meaningful in lane 0
  for (int n = warp; n < p.N; n += kWarps) {
    const float* z = logits + static_cast<int64_t>(n) * p.C;
    float* pr = probs + static_cast<int64_t>(n) * p.C;
    float mx = -INFINITY;
    for (int c = lane; c < p.C; c += 32) mx = fmaxf(mx, z[c]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    // fmaxf drops NaN; the CPU reference's max keeps the first element when
    // a comparison with NaN fails. Either way a NaN logit makes the row NaN.
    double sum = 0.0;
    for (int c = lane; c < p.C; c += 32) {
      const float e = expf(z[c] - mx);
      pr[c] = e;
      sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    // xor-shuffle sums give every lane the same bits only if the adds commute
    // exactly; take lane 0's value so all lanes scale by one number.
    sum = __shfl_sync(0xffffffffu, sum, 0);
    const float inv = static_cast<float>(1.0 / sum);
    for (int c = lane; c < p.C; c += 32) pr[c] *= inv;
    if (lane == 0) {
      const int32_t label = labels[n];
      total += (label >= 0 && label < p.C) ? log(sum) + mx - z[label] : nan("");
    }
  }
  if (lane == 0) warp_total[warp] = total;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int w = 0; w < kWarps; ++w) s += warp_total[w];
    *loss = static_cast<float>(s / p.N);
  }
}

__global__ void softmax_ce_backward_kernel(CrossEntropyParams p, const float* __restrict__ probs,
                                           const int32_t* __restrict__ labels,
                                           const float* __restrict__ dloss,
                                           float* __restrict__ dlogits, bool write) {
  const float scale = *dloss / static_cast<float>(p.N);
  const int64_t total = static_cast<int64_t>(p.N) * p.C;
  for (int64_t i = global_tid(); i < total; i += grid_stride()) {
    const int c = static_cast<int>(i % p.C);
    const int32_t label = labels[i / p.C];
    const float v = scale * (probs[i] - (c == label ? 1.0f : 0.0f));
    dlogits[i] = write ? v : dlogits[i] + v;
  }
}

// The CPU reference's rule: first maximum wins; a NaN is the maximum (first NaN).
__device__ __forceinline__ int row_argmax(const float* r, int C) {
  int best = 0;
  for (int c = 1; c < C && !isnan(r[best]); ++c)
    if (r[c] > r[best] || isnan(r[c])) best = c;
  return best;
}

__global__ void argmax_kernel(int N, int C, const float* __restrict__ x,
                              int32_t* __restrict__ idx) {
  for (int64_t n = global_tid(); n < N; n += grid_stride()) idx[n] = row_argmax(x + n * C, C);
}

__global__ void count_correct_kernel(int N, int C, const float* __restrict__ logits,
                                     const int32_t* __restrict__ labels,
                                     int32_t* __restrict__ correct) {
  __shared__ int smem[kThreads];
  int count = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x)
    count += row_argmax(logits + n * C, C) == labels[n] ? 1 : 0;
  count = block_reduce_sum(count, smem);
  if (threadIdx.x == 0) *correct = count;
}

}  // namespace

void softmax_ce_forward_cuda(const CrossEntropyParams& p, const float* logits,
                             const int32_t* labels, float* loss, float* probs, Stream stream) {
  SN_LAUNCH("softmax_ce_forward_kernel", softmax_ce_forward_kernel, 1, kCeThreads, 0, stream, p,
            logits, labels, loss, probs);
}

void softmax_ce_backward_cuda(const CrossEntropyParams& p, const float* probs,
                              const int32_t* labels, const float* dloss, float* dlogits,
                              Stream stream, bool write) {
  const int64_t total = static_cast<int64_t>(p.N) * p.C;
  SN_LAUNCH("softmax_ce_backward_kernel", softmax_ce_backward_kernel, grid_for(total), kThreads, 0,
            stream, p, probs, labels, dloss, dlogits, write);
}

void argmax_rows_cuda(int N, int C, const float* x, int32_t* idx, Stream stream) {
  if (N <= 0) return;
  SN_LAUNCH("argmax_kernel", argmax_kernel, grid_for(N), kThreads, 0, stream, N, C, x, idx);
}

void count_correct_cuda(int N, int C, const float* logits, const int32_t* labels, int32_t* correct,
                        Stream stream) {
  SN_LAUNCH("count_correct_kernel", count_correct_kernel, 1, kThreads, 0, stream, N, C, logits,
            labels, correct);
}

}  // namespace scratchnet::kernels
