#include "core/allocator.h"

#include <cstdlib>
#include <new>

#include "core/error.h"

namespace strata {

size_t CachingCpuAllocator::round_size(size_t nbytes) {
  // Small blocks to 512 B; larger ones to 1/8 of their power of two, so waste stays under 12.5%.
  if (nbytes <= 512) return 512;
  size_t p = 1;
  while (p < nbytes) p <<= 1;
  const size_t step = std::max<size_t>(p / 8, 512);
  return (nbytes + step - 1) / step * step;
}

void* CachingCpuAllocator::allocate(size_t nbytes) {
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
  void* p = std::aligned_alloc(kAlignment, size);
  if (!p) {
    empty_cache();
    p = std::aligned_alloc(kAlignment, size);
  }
  STRATA_CHECK(p, "out of host memory: could not allocate ", size, " bytes (",
               stats().current_bytes, " bytes in use); reduce the batch size or model size");
  std::lock_guard lock(mutex_);
  stats_.current_bytes += int64_t(size);
  stats_.reserved_bytes += int64_t(size);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
  return p;
}

void CachingCpuAllocator::deallocate(void* ptr, size_t nbytes) {
  const size_t size = round_size(nbytes);
  std::lock_guard lock(mutex_);
  free_[size].push_back(ptr);
  stats_.current_bytes -= int64_t(size);
  stats_.cached_bytes += int64_t(size);
}

MemoryStats CachingCpuAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void CachingCpuAllocator::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_bytes = stats_.current_bytes;
}

void CachingCpuAllocator::empty_cache() {
  std::lock_guard lock(mutex_);
  for (auto& [size, ptrs] : free_) {
    for (void* p : ptrs) std::free(p);
    stats_.cached_bytes -= int64_t(size * ptrs.size());
    stats_.reserved_bytes -= int64_t(size * ptrs.size());
  }
  free_.clear();
}

CachingCpuAllocator::~CachingCpuAllocator() {
  empty_cache();
}

}  // namespace strata
