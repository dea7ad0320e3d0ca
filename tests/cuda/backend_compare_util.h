#pragma once
// Helpers for tests that run a Backend method on the GPU and on the CPU with the same inputs and
// compare: host random tensors, raw uploads/downloads that do not depend on the CUDA copy kernels,
// views of a device buffer laid out like a host view, and a NaN-aware closeness check.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/ops/factory.h"
#include "core/tensor.h"

namespace strata::cuda_test {

#define STRATA_SKIP_WITHOUT_GPU()                                              \
  do {                                                                         \
    if (::strata::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

inline Device gpu() {
  return Device::cuda(0);
}
inline Backend& gpu_backend() {
  return backend_for(gpu());
}
inline Backend& cpu_backend() {
  return backend_for(Device::cpu());
}

// N(0, scale^2) values drawn in f64 and rounded to dtype, on the CPU.
inline Tensor host_randn(const Shape& shape, DType dtype, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = dist(gen);
  return from_vector(v, shape).to(dtype);
}

inline size_t nbytes(const Tensor& t) {
  return size_t(t.numel()) * t.element_size();
}

// A contiguous GPU copy of a host tensor (cudaMemcpy on the compute stream, then a sync).
inline Tensor upload(const Tensor& host) {
  const Tensor h = host.contiguous();
  Tensor d = Tensor::empty(h.shape(), h.dtype(), gpu());
  if (nbytes(h) == 0) return d;
  cudaStream_t s = cuda::stream(0);
  STRATA_CUDA_CHECK(
      cudaMemcpyAsync(d.raw_data(), h.raw_data(), nbytes(h), cudaMemcpyHostToDevice, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  return d;
}

// A host copy of a contiguous GPU tensor, after all queued work on its stream.
inline Tensor download(const Tensor& dev) {
  EXPECT_TRUE(dev.is_contiguous()) << "download expects a contiguous tensor";
  Tensor h = Tensor::empty(dev.shape(), dev.dtype());
  cudaStream_t s = cuda::stream(dev.device().index);
  if (nbytes(h) == 0) {
    STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
    return h;
  }
  STRATA_CUDA_CHECK(
      cudaMemcpyAsync(h.raw_data(), dev.raw_data(), nbytes(h), cudaMemcpyDeviceToHost, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  return h;
}

// A view of `base` with the shape, strides and offset of `like` (a view of a host buffer of the
// same size), so both backends see the same layout.
inline Tensor same_view(const Tensor& base, const Tensor& like) {
  return make_view(base, like.shape(), like.strides(), like.offset());
}

inline std::vector<double> values(const Tensor& host) {
  return host.to(DType::f64).to_vector<double>();
}

struct Tol {
  double rtol, atol;
};

// Per-dtype tolerances for results that both backends round once to the storage type: bf16
// results may land one bf16 ulp (2^-8 relative) apart.
inline Tol tol_for(DType t) {
  switch (t) {
    case DType::f64:
      return {1e-11, 1e-12};
    case DType::bf16:
      return {8e-3, 2e-3};
    default:
      return {2e-5, 2e-6};
  }
}

// |got - ref| <= rtol * |ref| + atol * scale with scale the largest finite |ref| (or `scale` if
// larger), so entries that come from cancellation are judged against the size of the data. NaN
// must meet NaN and an infinity the same infinity.
inline void expect_close(const std::vector<double>& got, const std::vector<double>& ref, Tol tol,
                         const std::string& what, double scale = 0) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  for (double r : ref)
    if (std::isfinite(r)) scale = std::max(scale, std::abs(r));
  scale = std::max(scale, 1e-30);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    bool ok;
    if (std::isnan(r))
      ok = std::isnan(g);
    else if (std::isinf(r))
      ok = g == r;
    else
      ok = std::abs(g - r) <= tol.rtol * std::abs(r) + tol.atol * scale;
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " got " << g << ", expected " << r << " (scale "
                    << scale << ")";
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ";
}

inline void expect_close(const Tensor& got_host, const Tensor& ref_host, Tol tol,
                         const std::string& what, double scale = 0) {
  ASSERT_EQ(shape_str(got_host.shape()), shape_str(ref_host.shape())) << what;
  expect_close(values(got_host), values(ref_host), tol, what, scale);
}

}  // namespace strata::cuda_test
