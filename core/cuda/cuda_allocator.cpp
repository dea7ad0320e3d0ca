#include "core/cuda/cuda_allocator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"

namespace strata::cuda {

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (std::abs(v) >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

size_t CachingCudaAllocator::round_size(size_t nbytes) {
  constexpr size_t kMinStep = 512, kMaxStep = size_t(2) << 20;
  if (nbytes <= kMinStep) return kMinStep;
  size_t p = 1;  // the largest power of two <= nbytes, so the step is at most nbytes / 8
  while (p * 2 <= nbytes) p <<= 1;
  const size_t step = std::clamp(p / 8, kMinStep, kMaxStep);
  return (nbytes + step - 1) / step * step;
}

void* CachingCudaAllocator::allocate(size_t nbytes) {
  const size_t size = round_size(nbytes);
  if (void* p = cache_.take(size)) return p;
  DeviceGuard guard(device_);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size);
  if (err == cudaErrorMemoryAllocation) {
    // The cache may hold enough memory in blocks of other sizes: give it back and try once more.
    (void)cudaGetLastError();
    empty_cache();
    err = cudaMalloc(&p, size);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    const MemoryStats s = stats();
    size_t free_b = 0, total_b = 0;
    std::string device_line;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      device_line = "; the device has " + format_bytes(int64_t(free_b)) + " free of " +
                    format_bytes(int64_t(total_b));
    (void)cudaGetLastError();
    STRATA_FAIL("CUDA out of memory on cuda:", device_, ": could not allocate ",
                format_bytes(int64_t(size)), " (", nbytes, " bytes requested); this process holds ",
                format_bytes(s.current_bytes), " in tensors and ", format_bytes(s.cached_bytes),
                " cached (the cache was emptied and the allocation retried)", device_line,
                ". Use a smaller batch size (gradient accumulation keeps the effective batch), a "
                "shorter sequence, activation recomputation or a smaller model");
  }
  STRATA_CUDA_CHECK(err);
  cache_.add_fresh(size);
  return p;
}

void CachingCudaAllocator::deallocate(void* ptr, size_t nbytes) {
  // No synchronisation: kernels still queued on the compute stream may read the block, and the
  // next user is queued behind them on that same stream (see the header).
  cache_.put(ptr, round_size(nbytes));
}

MemoryStats CachingCudaAllocator::stats() const {
  return cache_.stats();
}

void CachingCudaAllocator::reset_peak() {
  cache_.reset_peak();
}

void CachingCudaAllocator::empty_cache() {
  DeviceGuard guard(device_);
  // Cached blocks may still be read by queued kernels (on the compute stream or a communication
  // stream): wait for all of the device's work before returning them.
  STRATA_CUDA_CHECK(cudaDeviceSynchronize());
  cache_.drain([](void* p) { STRATA_CUDA_CHECK(cudaFree(p)); });
}

}  // namespace strata::cuda
