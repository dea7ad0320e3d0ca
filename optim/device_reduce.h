#pragma once
// Reductions over tensors in GPU memory for the optimizer and clipping, internal to optim/. They
// queue work on the device and return device tensors, so a caller decides when (and whether) to
// read a value back.
#include <vector>

#include "core/tensor.h"

namespace strata::optim::detail {

// The sum of squares of every element of `xs` (floating, all on one GPU) as a one-element f64
// tensor on that GPU: f64 accumulation in a fixed order (block partials, then one fixed tree),
// so the same tensors give the same bits on every run.
Tensor device_sum_squares(const std::vector<Tensor>& xs);

// Global-norm clipping on a GPU: returns {norm, coef} (one-element f64 tensors on the device)
// and multiplies every tensor of `grads` by coef in place, coef being clip_grad_norm's factor (1
// when max_norm <= 0, the norm is within it, or the norm is not finite).
struct DeviceClip {
  Tensor norm, coef;
};
DeviceClip device_clip(const std::vector<Tensor>& grads, double max_norm);

}  // namespace strata::optim::detail
