#pragma once
// LayerNorm and RMSNorm over the last dimension of contiguous [rows, n] data.
//
// Per-row statistics (mean, rstd = 1/sqrt(var + eps)) are computed in acc_t<T> and returned so
// that the backward pass need not recompute them. LayerNorm uses the biased variance, as PyTorch
// does. RMSNorm is the T5/Llama form: y = w * x / sqrt(mean(x^2) + eps), no mean, no bias.
//
// Weight gradients are written, not accumulated. They are reduced over rows in fixed chunks whose
// partial sums are combined in a fixed order, so they are bitwise independent of the thread count.
#include <cstdint>

#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu {

// w and b may be null (no affine weight / no bias). mean and rstd have `rows` entries.
template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                        int64_t rows, int64_t n, double eps);

// w may be null (then it is taken as 1). Each of dx, dw, db may be null to skip that gradient.
template <class T>
void layer_norm_backward(const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd,
                         const T* dy, T* dx, T* dw, T* db, int64_t rows, int64_t n);

// w may be null. rstd has `rows` entries.
template <class T>
void rms_norm_forward(const T* x, const T* w, T* y, acc_t<T>* rstd, int64_t rows, int64_t n,
                      double eps);

// w may be null (taken as 1). dx and dw may be null.
template <class T>
void rms_norm_backward(const T* x, const T* w, const acc_t<T>* rstd, const T* dy, T* dx, T* dw,
                       int64_t rows, int64_t n);

}  // namespace strata::cpu
