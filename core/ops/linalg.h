#pragma once
#include "core/tensor.h"

namespace strata {

// Matrix product of the last two dims, batch dims broadcast: [..., M, K] x [..., K, N].
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] W[out, in]^T + bias[out] (bias may be undefined), as torch.nn.functional.linear.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {});

}  // namespace strata
