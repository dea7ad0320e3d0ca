#pragma once
// A caching allocator per device. Training allocates the same activation sizes every step, so
// freed blocks are kept in per-size free lists and handed back without a trip to the system.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/device.h"

namespace strata {

struct MemoryStats {
  int64_t current_bytes = 0;   // handed out to tensors now
  int64_t peak_bytes = 0;      // maximum of current_bytes since the last reset
  int64_t cached_bytes = 0;    // freed by tensors, kept for reuse
  int64_t reserved_bytes = 0;  // current + cached: what the process holds from the system
  int64_t allocations = 0;     // requests served
  int64_t cache_hits = 0;      // requests served from the cache
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual Device device() const = 0;
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak() = 0;
  virtual void empty_cache() = 0;
  // Page-locked host memory (core/cuda/pinned_allocator.h): its tensors are CPU tensors that the
  // GPU can copy from asynchronously.
  virtual bool is_pinned() const { return false; }
};

// The bookkeeping every caching allocator shares (host, GPU, pinned): per-size free lists and the
// statistics, under one lock. The allocator rounds sizes and talks to the system; this holds what
// it has cached and counts what it hands out.
class BlockCache {
 public:
  // A cached block of exactly `size` bytes (now handed out), or nullptr; counts the request.
  void* take(size_t size);
  // Counts a block of `size` bytes fresh from the system, now handed out.
  void add_fresh(size_t size);
  // A tensor let go of `p`: it is cached and handed out again by take().
  void put(void* p, size_t size) {
    released(size);
    shelve(p, size);
  }
  // put() in two halves, for a block that must wait before it can be reused (pinned memory with
  // copies in flight): released() counts it as cached at once, shelve() makes it available later.
  void released(size_t size);
  void shelve(void* p, size_t size);

  MemoryStats stats() const;
  void reset_peak();
  // Empties the free lists, handing each block to release(ptr), and uncounts them.
  template <class Release>
  void drain(Release&& release) {
    std::lock_guard lock(mutex_);
    for (auto& [size, ptrs] : free_) {
      for (void* p : ptrs) release(p);
      stats_.cached_bytes -= int64_t(size * ptrs.size());
      stats_.reserved_bytes -= int64_t(size * ptrs.size());
    }
    free_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  MemoryStats stats_;
};

class CachingCpuAllocator final : public Allocator {
 public:
  static constexpr size_t kAlignment = 64;  // a cache line; also the widest vector register
  ~CachingCpuAllocator() override;
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  Device device() const override { return Device::cpu(); }
  MemoryStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;

  // Sizes are rounded so that nearby requests share a free list.
  static size_t round_size(size_t nbytes);

 private:
  BlockCache cache_;
};

// A block of device memory that returns itself to its allocator when the last owner lets go.
class DataPtr {
 public:
  DataPtr() = default;
  DataPtr(Allocator* alloc, size_t nbytes)
      : ptr_(nbytes ? alloc->allocate(nbytes) : nullptr), nbytes_(nbytes), alloc_(alloc) {}
  DataPtr(const DataPtr&) = delete;
  DataPtr& operator=(const DataPtr&) = delete;
  ~DataPtr() {
    if (ptr_) alloc_->deallocate(ptr_, nbytes_);
  }
  void* get() const { return ptr_; }
  size_t nbytes() const { return nbytes_; }
  Allocator* allocator() const { return alloc_; }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_ = 0;
  Allocator* alloc_ = nullptr;
};

}  // namespace strata
