// Gathers the labels of a batch on the GPU: out[b] = labels[index[b]] as int32.
// An index outside [0, count) (the op layer cannot check device indices) gives -1
// instead of a wild read.
#include "kernels/cuda/launch.cuh"
#include "kernels/gather.h"

namespace scratchnet::kernels {

namespace {

__global__ void gather_labels_kernel(int n, int count, const uint8_t* __restrict__ labels,
                                     const int32_t* __restrict__ index, int32_t* __restrict__ out) {
  for (int64_t b = cudadetail::global_tid(); b < n; b += cudadetail::grid_stride())
    out[b] = index[b] < 0 || index[b] >= count ? -1 : static_cast<int32_t>(labels[index[b]]);
}

}  // namespace

void gather_labels_u8_cuda(int n, int count, const uint8_t* labels, const int32_t* index,
                           int32_t* out, Stream stream) {
  if (n <= 0) return;
  SN_LAUNCH("gather_labels_kernel", gather_labels_kernel, cudadetail::grid_for(n),
            cudadetail::kThreads, 0, stream, n, count, labels, index, out);
}

}  // namespace scratchnet::kernels
