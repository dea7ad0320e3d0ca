#pragma once
// Fused cross-entropy over contiguous logits [rows, V] with int64 class targets.
//
// Per row, with lse = log(sum_j exp(logit[j])) and ls the label smoothing (PyTorch's definition):
//   loss = lse - ((1 - ls) * logit[t] + ls / V * sum_j logit[j])
// Rows whose target equals ignore_index get loss 0 (their lse is still written) and zero gradient.
// Reduction over rows (mean over non-ignored rows, or sum) is left to the caller.
// A target outside [0, V) that is not ignore_index throws strata::Error naming the row, the target
// and V; nothing is written in that case.
#include <cstdint>

#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu {

template <class T>
void cross_entropy_forward(const T* logits, const int64_t* target, int64_t rows, int64_t V,
                           int64_t ignore_index, double label_smoothing, acc_t<T>* loss_per_row,
                           acc_t<T>* lse_per_row);

// dlogits = dloss_row * (softmax(logits) - (1 - ls) * onehot(t) - ls / V); zero for ignored rows.
// lse is the forward's lse_per_row.
template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, const acc_t<T>* lse,
                            const acc_t<T>* dloss_per_row, int64_t rows, int64_t V,
                            int64_t ignore_index, double label_smoothing, T* dlogits);

}  // namespace strata::cpu
