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
  {
    std::lock_guard lock(mutex_);
    ++stats_.allocations;
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      ++stats_.cache_hits;
      stats_.cached_bytes -= int64_t(size);
      stats_.current_bytes += int64_t(size);
      stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
      return p;
    }
  }
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
  std::lock_guard lock(mutex_);
  stats_.current_bytes += int64_t(size);
  stats_.reserved_bytes += int64_t(size);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
  return p;
}

void CachingCudaAllocator::deallocate(void* ptr, size_t nbytes) {
  // No synchronisation: kernels still queued on the compute stream may read the block, and the
  // next user is queued behind them on that same stream (see the header).
  const size_t size = round_size(nbytes);
  std::lock_guard lock(mutex_);
  free_[size].push_back(ptr);
  stats_.current_bytes -= int64_t(size);
  stats_.cached_bytes += int64_t(size);
}

MemoryStats CachingCudaAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void CachingCudaAllocator::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_bytes = stats_.current_bytes;
}

void CachingCudaAllocator::empty_cache() {
  DeviceGuard guard(device_);
  // Cached blocks may still be read by queued kernels (on the compute stream or a communication
  // stream): wait for all of the device's work before returning them.
  STRATA_CUDA_CHECK(cudaDeviceSynchronize());
  std::lock_guard lock(mutex_);
  for (auto& [size, ptrs] : free_) {
    for (void* p : ptrs) STRATA_CUDA_CHECK(cudaFree(p));
    stats_.cached_bytes -= int64_t(size * ptrs.size());
    stats_.reserved_bytes -= int64_t(size * ptrs.size());
  }
  free_.clear();
}

}  // namespace strata::cuda
