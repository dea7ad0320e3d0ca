#include "core/cuda/pinned_allocator.h"

#include <algorithm>

#include "core/cuda/cuda_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"

namespace strata::cuda {

void CachingPinnedAllocator::poll_pending_locked() {
  for (size_t i = 0; i < pending_.size();) {
    Pending& b = pending_[i];
    bool done = true;
    for (cudaEvent_t e : b.events) {
      const cudaError_t q = cudaEventQuery(e);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();
        done = false;
        break;
      }
      STRATA_CUDA_CHECK(q);
    }
    if (!done) {
      ++i;
      continue;
    }
    for (cudaEvent_t e : b.events) STRATA_CUDA_CHECK(cudaEventDestroy(e));
    cache_.shelve(b.ptr, b.size);
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }
}

void* CachingPinnedAllocator::allocate(size_t nbytes) {
  const size_t size = CachingCpuAllocator::round_size(nbytes);
  {
    std::lock_guard lock(mutex_);
    if (!pending_.empty()) poll_pending_locked();
  }
  if (void* p = cache_.take(size)) return p;
  void* p = nullptr;
  // Portable: the block is pinned for every device's context, not only the current one.
  cudaError_t err = cudaHostAlloc(&p, size, cudaHostAllocPortable);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    empty_cache();
    err = cudaHostAlloc(&p, size, cudaHostAllocPortable);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    const MemoryStats s = stats();
    STRATA_FAIL("out of pinned host memory: could not allocate ", format_bytes(int64_t(size)), " (",
                nbytes, " bytes requested); ", format_bytes(s.current_bytes),
                " of pinned memory is in use and ", format_bytes(s.cached_bytes),
                " cached. Use a smaller batch or fewer batches in flight (loader prefetch)");
  }
  STRATA_CUDA_CHECK(err);
  cache_.add_fresh(size);
  return p;
}

void CachingPinnedAllocator::deallocate(void* ptr, size_t nbytes) {
  const size_t size = CachingCpuAllocator::round_size(nbytes);
  cache_.released(size);
  std::lock_guard lock(mutex_);
  auto it = in_use_events_.find(ptr);
  if (it == in_use_events_.end()) {
    cache_.shelve(ptr, size);
    return;
  }
  pending_.push_back(Pending{ptr, size, std::move(it->second)});
  in_use_events_.erase(it);
}

void CachingPinnedAllocator::record_stream(void* base, int device, cudaStream_t stream) {
  DeviceGuard guard(device);  // an event belongs to the device that is current at creation
  cudaEvent_t e;
  STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  STRATA_CUDA_CHECK(cudaEventRecord(e, stream));
  std::lock_guard lock(mutex_);
  in_use_events_[base].push_back(e);
}

MemoryStats CachingPinnedAllocator::stats() const {
  return cache_.stats();
}

void CachingPinnedAllocator::reset_peak() {
  cache_.reset_peak();
}

void CachingPinnedAllocator::empty_cache() {
  {
    std::lock_guard lock(mutex_);
    poll_pending_locked();
  }
  cache_.drain([](void* p) { STRATA_CUDA_CHECK(cudaFreeHost(p)); });
}

}  // namespace strata::cuda
