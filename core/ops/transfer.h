#pragma once
// Moving tensors between devices, and the device checks of ops that take several tensors.
#include "core/tensor.h"

namespace strata {

// x on `device` (differentiable: the gradient moves back to x's device). On x's own device it
// returns x itself, or a view of it when the move must be recorded for autograd.
Tensor to_device(const Tensor& x, Device device);

// dst = src (same shape) across devices, converting dtype and strides. Needs the CUDA backend.
void copy_across_devices(const Tensor& src, const Tensor& dst);

// A constant built on the host (an index, a mask, positions, a scalar) that meets a tensor on a
// GPU follows it there, as PyTorch lets CPU scalars do: models build such constants with
// from_vector / scalar_tensor, which allocate on the CPU. Returns t unchanged when it is already
// on ref's device, is undefined, lives on a GPU, or requires grad (a mismatch of differentiable
// tensors stays an error).
Tensor follow_device(const Tensor& t, const Tensor& ref);

// Throws unless `t` (when defined) is on `ref`'s device, with a message such as
//   "matmul: a is on cuda:0 and b on cpu; move one with .to(device)".
void check_same_device(const char* op, const char* ref_name, const Tensor& ref, const char* name,
                       const Tensor& t);

}  // namespace strata
