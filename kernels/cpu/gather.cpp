// CPU gather of batch labels: out[b] = labels[index[b]] widened to int32.
// The op layer validates indices; the kernel still never reads out of bounds.
#include "kernels/gather.h"

namespace scratchnet::kernels {

void gather_labels_u8_cpu(int n, int count, const uint8_t* labels, const int32_t* index,
                          int32_t* out) {
  for (int b = 0; b < n; ++b)
    out[b] = index[b] < 0 || index[b] >= count ? -1 : static_cast<int32_t>(labels[index[b]]);
}

}  // namespace scratchnet::kernels
