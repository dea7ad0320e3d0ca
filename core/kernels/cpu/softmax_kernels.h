#pragma once
// Fused softmax and log-softmax over the last dimension of contiguous [rows, n] data.
//
// Semantics follow PyTorch: a row whose entries are all -inf (or that holds +inf or NaN) gives NaN;
// the attention kernel handles masking itself and never relies on this. Statistics are computed
// in acc_t<T>; each row is reduced in a fixed order, so results do not depend on the thread count.
#include <cstdint>

#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu {

// y = softmax(x) or log_softmax(x) row-wise. y may alias x.
template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n, bool log);

// y is the forward output. softmax: dx = y * (dy - sum(dy * y));
// log-softmax: dx = dy - exp(y) * sum(dy). dx may alias dy.
template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t n, bool log);

}  // namespace strata::cpu
