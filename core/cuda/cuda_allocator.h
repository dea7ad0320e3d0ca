#pragma once
// The caching allocator of one GPU. cudaMalloc is slow and cudaFree synchronises the device, and a
// training step allocates the same activation sizes every step, so freed blocks are kept in
// per-size free lists and handed to the next request of that size.
//
// Reuse without synchronisation is safe because the cache is stream-ordered: every kernel and copy
// that touches this device's memory runs on the device's one compute stream (cuda::stream). When a
// tensor dies, kernels queued before that point may still read its block, but any later user of
// the block is queued on the same stream after them, so the stream itself orders the old reads
// before the new writes. Work on another stream (a communication stream, say) that uses a block
// must make the compute stream wait for it (an event and cudaStreamWaitEvent) before the tensor
// is released; cross-device copies (core/cuda/cuda_transfer.cpp) do so.
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/allocator.h"

namespace strata::cuda {

class CachingCudaAllocator final : public Allocator {
 public:
  explicit CachingCudaAllocator(int device) : device_(device) {}
  // The allocator lives in the Runtime, which is never destroyed (CUDA may already be torn down
  // when static destructors run), so there is no destructor that frees memory.

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  Device device() const override { return Device::cuda(device_); }
  MemoryStats stats() const override;
  void reset_peak() override;
  // Waits for all work on the device, then returns every cached block to CUDA.
  void empty_cache() override;

  // Size classes. Below 4 KiB: multiples of 512 B. Above: steps of 1/8 of the largest power of
  // two not above the size (waste under 12.5%), capped at 2 MiB, so requests of 16 MiB and more
  // round to multiples of 2 MiB.
  // Blocks are reused for exactly their class: steady-state training repeats its sizes, so exact
  // classes hit the cache without splitting or coalescing blocks.
  static size_t round_size(size_t nbytes);

 private:
  int device_;
  BlockCache cache_;
};

// "1.50 GiB" and the like, for messages.
std::string format_bytes(int64_t bytes);

}  // namespace strata::cuda
