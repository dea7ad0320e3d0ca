#pragma once
// Helpers of the NCCL tests: copies between this rank's GPU and the CPU that depend on nothing
// but the CUDA runtime (so the tests check the communicator, not the backend's copy kernels), and
// comparisons.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/ops.h"

namespace strata::parallel::testing {

inline Tensor to_gpu(const Tensor& cpu, Device device) {
  const Tensor c = cpu.contiguous();
  Tensor g = Tensor::empty(c.shape(), c.dtype(), device);
  cudaStream_t s = cuda::stream(device.index);
  STRATA_CUDA_CHECK(cudaMemcpyAsync(
      g.raw_data(), c.raw_data(), size_t(c.numel()) * c.element_size(), cudaMemcpyHostToDevice, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));  // `c` may be freed on return
  return g;
}

// Waits for the device's compute stream: the copy sees every result queued before it.
inline Tensor to_cpu(const Tensor& gpu) {
  const Tensor g = gpu.contiguous();
  Tensor c = Tensor::empty(g.shape(), g.dtype());
  cudaStream_t s = cuda::stream(g.device().index);
  STRATA_CUDA_CHECK(cudaMemcpyAsync(
      c.raw_data(), g.raw_data(), size_t(g.numel()) * g.element_size(), cudaMemcpyDeviceToHost, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  return c;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * x.element_size()) == 0;
}

// max |a - b| / max(1, max |b|), in f64 (CPU tensors).
inline double rel_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::f64).to_vector<double>();
  const auto y = b.to(DType::f64).to_vector<double>();
  if (x.size() != y.size()) return INFINITY;
  double diff = 0, scale = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return diff / scale;
}

}  // namespace strata::parallel::testing
