// Gathers labels of a batch: out[b] = labels[index[b]] widened to int32;
// an index outside [0, count) gives -1 (which makes the loss NaN downstream).
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

void gather_labels_u8_cpu(int n, int count, const uint8_t* labels, const int32_t* index,
                          int32_t* out);

#ifdef SCRATCHNET_WITH_CUDA
void gather_labels_u8_cuda(int n, int count, const uint8_t* labels, const int32_t* index,
                           int32_t* out, Stream stream);
#endif

}  // namespace scratchnet::kernels
