#include "core/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "core/error.h"

namespace strata {

size_t CachingCpuAllocator::round_size(size_t nbytes) {
  // Small blocks to 512 B; larger ones to 1/8 of the next power of two, so waste stays under 25%
  // (4097 B rounds to 5120 B).
  if (nbytes <= 512) return 512;
  size_t p = 1;
  while (p < nbytes) p <<= 1;
  const size_t step = std::max<size_t>(p / 8, 512);
  return (nbytes + step - 1) / step * step;
}

void* BlockCache::take(size_t size) {
  std::lock_guard lock(mutex_);
  ++stats_.allocations;
  auto it = free_.find(size);
  if (it == free_.end() || it->second.empty()) return nullptr;
  void* p = it->second.back();
  it->second.pop_back();
  ++stats_.cache_hits;
  stats_.cached_bytes -= int64_t(size);
  stats_.current_bytes += int64_t(size);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
  return p;
}

void BlockCache::add_fresh(size_t size) {
  std::lock_guard lock(mutex_);
  stats_.current_bytes += int64_t(size);
  stats_.reserved_bytes += int64_t(size);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
}

void BlockCache::released(size_t size) {
  std::lock_guard lock(mutex_);
  stats_.current_bytes -= int64_t(size);
  stats_.cached_bytes += int64_t(size);
}

void BlockCache::shelve(void* p, size_t size) {
  std::lock_guard lock(mutex_);
  free_[size].push_back(p);
}

MemoryStats BlockCache::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void BlockCache::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_bytes = stats_.current_bytes;
}

void* CachingCpuAllocator::allocate(size_t nbytes) {
  const size_t size = round_size(nbytes);
  if (void* p = cache_.take(size)) return p;
  void* p = std::aligned_alloc(kAlignment, size);
  if (!p) {
    empty_cache();
    p = std::aligned_alloc(kAlignment, size);
  }
  STRATA_CHECK(p, "out of host memory: could not allocate ", size, " bytes (",
               stats().current_bytes, " bytes in use); reduce the batch size or model size");
  cache_.add_fresh(size);
  return p;
}

void CachingCpuAllocator::deallocate(void* ptr, size_t nbytes) {
  cache_.put(ptr, round_size(nbytes));
}

MemoryStats CachingCpuAllocator::stats() const {
  return cache_.stats();
}

void CachingCpuAllocator::reset_peak() {
  cache_.reset_peak();
}

void CachingCpuAllocator::empty_cache() {
  cache_.drain([](void* p) { std::free(p); });
}

CachingCpuAllocator::~CachingCpuAllocator() {
  empty_cache();
}

}  // namespace strata
