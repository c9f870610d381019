// CPU reference for the fused softmax cross-entropy (mean over the batch),
// plus row argmax and the count of correct predictions. Layout: logits and
// probs (N, C) row-major, labels (N) int32.
// Rows are independent and run in parallel; the per-row losses are then
// summed in row order in double, so the loss does not depend on the thread
// count. Each row subtracts its maximum before exponentiating: logits of
// 1000 give exp(0), never inf.
#include "kernels/softmax_ce.h"

#include <cmath>
#include <limits>
#include <vector>

namespace scratchnet::kernels {

void softmax_ce_forward_cpu(const CrossEntropyParams& p, const float* logits, const int32_t* labels,
                            float* loss, float* probs) {
  std::vector<double> row_loss(static_cast<std::size_t>(p.N));
#pragma omp parallel for schedule(static)
  for (int n = 0; n < p.N; ++n) {
    const float* z = logits + static_cast<int64_t>(n) * p.C;
    float* pr = probs + static_cast<int64_t>(n) * p.C;
    float mx = z[0];
    for (int c = 1; c < p.C; ++c) mx = z[c] > mx ? z[c] : mx;
    double sum = 0.0;
    for (int c = 0; c < p.C; ++c) {
      const float e = std::exp(z[c] - mx);
      pr[c] = e;
      sum += e;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int c = 0; c < p.C; ++c) pr[c] *= inv;
    const int32_t label = labels[n];
    // A bad label poisons the loss instead of reading out of bounds.
    row_loss[n] = (label >= 0 && label < p.C) ? std::log(sum) + mx - z[label]
                                              : std::numeric_limits<double>::quiet_NaN();
  }
  double total = 0.0;
  for (int n = 0; n < p.N; ++n) total += row_loss[n];
  *loss = static_cast<float>(total / p.N);
}

void softmax_ce_backward_cpu(const CrossEntropyParams& p, const float* probs, const int32_t* labels,
                             const float* dloss, float* dlogits, bool write) {
  const float scale = *dloss / static_cast<float>(p.N);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < p.N; ++n) {
    const float* pr = probs + static_cast<int64_t>(n) * p.C;
    float* d = dlogits + static_cast<int64_t>(n) * p.C;
    const int32_t label = labels[n];  // out of range: no one-hot term, no stray write
    for (int c = 0; c < p.C; ++c) {
      const float v = scale * (pr[c] - (c == label ? 1.0f : 0.0f));
      d[c] = write ? v : d[c] + v;
    }
  }
}

void argmax_rows_cpu(int N, int C, const float* x, int32_t* idx) {
  for (int n = 0; n < N; ++n) {
    const float* r = x + static_cast<int64_t>(n) * C;
    int best = 0;
    // Strictly greater: the first maximum wins ties (torch.argmax). A NaN
    // counts as the maximum, as in PyTorch, and the first NaN is kept.
    for (int c = 1; c < C && !std::isnan(r[best]); ++c)
      if (r[c] > r[best] || std::isnan(r[c])) best = c;
    idx[n] = best;
  }
}

void count_correct_cpu(int N, int C, const float* logits, const int32_t* labels, int32_t* correct) {
  std::vector<int32_t> idx(static_cast<std::size_t>(N));
  argmax_rows_cpu(N, C, logits, idx.data());
  int32_t count = 0;
  for (int n = 0; n < N; ++n) count += idx[n] == labels[n] ? 1 : 0;
  *correct = count;
}

}  // namespace scratchnet::kernels
