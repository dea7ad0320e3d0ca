#pragma once
// Page-locked (pinned) host memory for loader batches. The GPU copies from pinned memory by DMA,
// asynchronously and at full bus speed; from ordinary (pageable) memory the driver first stages
// the data itself. Tensors in it are CPU tensors (device cpu): CPU kernels use them as any other.
//
// A host-to-device copy from a pinned block is still running when the copy call returns, so a
// freed block must not be reused (and overwritten) before that copy ends. Copies record an event
// on their stream for the block (record_stream); a freed block with unfinished events waits in a
// pending list and joins the cache when they complete. Writing into a live pinned tensor while a
// copy from it may be in flight is the caller's race: take a fresh tensor per batch instead.
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"

namespace strata::cuda {

class CachingPinnedAllocator final : public Allocator {
 public:
  // Never destroyed (it lives in the Runtime; see CachingCudaAllocator).
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  Device device() const override { return Device::cpu(); }
  MemoryStats stats() const override;
  void reset_peak() override;
  // Frees the cached blocks whose copies have finished.
  void empty_cache() override;
  bool is_pinned() const override { return true; }

  // Marks the block starting at `base` (a Storage's data()) as read by work queued on `stream` of
  // `device`: the block is not reused until that work is done.
  void record_stream(void* base, int device, cudaStream_t stream);

 private:
  struct Pending {
    void* ptr;
    size_t size;
    std::vector<cudaEvent_t> events;
  };
  // Moves pending blocks whose events have completed to the free lists.
  void poll_pending_locked();

  BlockCache cache_;          // blocks whose copies have finished, and the statistics
  mutable std::mutex mutex_;  // guards the two below
  std::unordered_map<void*, std::vector<cudaEvent_t>> in_use_events_;
  std::vector<Pending> pending_;
};

}  // namespace strata::cuda
