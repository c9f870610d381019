// Pointwise ops over n contiguous floats.
//   relu:    y = max(x, 0);        backward dx += dy * (y > 0)
//            (write: dx = dy * (y > 0), dx may hold garbage; see core/autograd.h)
//   sigmoid: y = 1 / (1 + e^-x);   backward dx += dy * y * (1 - y) (write: =)
//   add:     y = a + b (residual connections); its backward is accumulate
//   add_relu: y = max(a + b, 0) (a residual block's end, one pass);
//            backward da += dy * (y > 0), db += the same (either may be null;
//            write_a / write_b: = instead of +=; not with da == db)
//   accumulate: y += x (gradient accumulation)
//   fill:    y = value
// Backward passes take the forward *output* y, so the input need not be kept.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

void relu_forward_cpu(int64_t n, const float* x, float* y);
void relu_backward_cpu(int64_t n, const float* y, const float* dy, float* dx, bool write = false);
void sigmoid_forward_cpu(int64_t n, const float* x, float* y);
// std::exp, one thread: the oracle of the polynomial exp above (tests).
void sigmoid_forward_cpu_plain(int64_t n, const float* x, float* y);
void sigmoid_backward_cpu(int64_t n, const float* y, const float* dy, float* dx,
                          bool write = false);
void add_forward_cpu(int64_t n, const float* a, const float* b, float* y);
void add_relu_forward_cpu(int64_t n, const float* a, const float* b, float* y);
void add_relu_backward_cpu(int64_t n, const float* y, const float* dy, float* da, float* db,
                           bool write_a = false, bool write_b = false);
void accumulate_cpu(int64_t n, const float* x, float* y);
void fill_cpu(int64_t n, float value, float* y);

#ifdef SCRATCHNET_WITH_CUDA
void relu_forward_cuda(int64_t n, const float* x, float* y, Stream stream);
void relu_backward_cuda(int64_t n, const float* y, const float* dy, float* dx, Stream stream,
                        bool write = false);
void sigmoid_forward_cuda(int64_t n, const float* x, float* y, Stream stream);
void sigmoid_backward_cuda(int64_t n, const float* y, const float* dy, float* dx, Stream stream,
                           bool write = false);
void add_forward_cuda(int64_t n, const float* a, const float* b, float* y, Stream stream);
void add_relu_forward_cuda(int64_t n, const float* a, const float* b, float* y, Stream stream);
void add_relu_backward_cuda(int64_t n, const float* y, const float* dy, float* da, float* db,
                            Stream stream, bool write_a = false, bool write_b = false);
void accumulate_cuda(int64_t n, const float* x, float* y, Stream stream);
void fill_cuda(int64_t n, float value, float* y, Stream stream);
#endif

}  // namespace scratchnet::kernels
