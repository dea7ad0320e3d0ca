#pragma once
// Copies between devices: host <-> GPU and GPU <-> GPU. Reached through Tensor::copy_ and
// Tensor::to(Device) (core/ops/transfer.cpp); no CUDA header needed to call it.
#include "core/tensor.h"

namespace strata::cuda {

// dst = src for tensors of the same shape on different devices, at least one of them a GPU; any
// dtypes and strides (broadcast sources included). Contiguous same-dtype data moves with one
// cudaMemcpyAsync; otherwise the source side first writes a contiguous copy in dst's dtype with its
// own backend, and the destination side scatters into dst's strides with its backend.
//
// Ordering with the host:
// - to the host: the device's stream is synchronised before returning, so the host can read dst.
// - from pageable host memory: synchronised too. cudaMemcpyAsync from pageable memory may return
//   before the driver has read the source, and the source (often a temporary) may be freed and
//   reused as soon as this returns.
// - from pinned memory (Tensor::empty_pinned): not synchronised; the pinned allocator keeps the
//   block from reuse until the copy has finished (core/cuda/pinned_allocator.h).
// Between GPUs the destination stream waits for the source stream, and the source stream waits
// for the copy, so neither side's caching allocator reuses a block the copy still uses.
void copy_between(const Tensor& src, const Tensor& dst);

}  // namespace strata::cuda
