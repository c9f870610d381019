// Fused softmax cross-entropy, mean over the batch (torch.nn.CrossEntropyLoss).
//   logits (N, C), labels (N) int32 in [0, C), loss: one float,
//   probs (N, C): softmax(logits), saved for backward.
//   loss = (1/N) Σ_n [ logsumexp(logits_n) - logits_n[label_n] ], computed
//   with the row maximum subtracted (never overflows).
// Backward: dlogits += dloss * (probs - onehot(label)) / N, where dloss points
// at the (device) gradient of the loss scalar. write: dlogits = ... instead
// of += (dlogits uninitialised; see core/autograd.h).
// Labels are validated by the op layer; a kernel given a bad label writes NaN
// into the loss rather than reading out of bounds.
#pragma once
#include <cstdint>

#include "kernels/common.h"

namespace scratchnet::kernels {

struct CrossEntropyParams {
  int N, C;
};

CrossEntropyParams cross_entropy_params(int N, int C);

void softmax_ce_forward_cpu(const CrossEntropyParams& p, const float* logits, const int32_t* labels,
                            float* loss, float* probs);
void softmax_ce_backward_cpu(const CrossEntropyParams& p, const float* probs, const int32_t* labels,
                             const float* dloss, float* dlogits, bool write = false);

// Row-wise argmax (first maximum on ties), and the number of rows whose argmax
// equals the label, written to *correct.
void argmax_rows_cpu(int N, int C, const float* x, int32_t* idx);
void count_correct_cpu(int N, int C, const float* logits, const int32_t* labels, int32_t* correct);

#ifdef SCRATCHNET_WITH_CUDA
void softmax_ce_forward_cuda(const CrossEntropyParams& p, const float* logits,
                             const int32_t* labels, float* loss, float* probs, Stream stream);
void softmax_ce_backward_cuda(const CrossEntropyParams& p, const float* probs,
                              const int32_t* labels, const float* dloss, float* dlogits,
                              Stream stream, bool write = false);
void argmax_rows_cuda(int N, int C, const float* x, int32_t* idx, Stream stream);
void count_correct_cuda(int N, int C, const float* logits, const int32_t* labels, int32_t* correct,
                        Stream stream);
#endif

}  // namespace scratchnet::kernels
