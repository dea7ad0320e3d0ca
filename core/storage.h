#pragma once
// The memory behind one or more tensors. Views share a Storage; its version counter is bumped by
// every in-place write so autograd can tell when a tensor it saved was overwritten.
#include <atomic>
#include <cstdint>

#include "core/allocator.h"
#include "core/device.h"

namespace strata {

class Storage {
 public:
  Storage(Allocator* alloc, size_t nbytes) : data_(alloc, nbytes), device_(alloc->device()) {}

  void* data() const { return data_.get(); }
  size_t nbytes() const { return data_.nbytes(); }
  Device device() const { return device_; }
  Allocator* allocator() const { return data_.allocator(); }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  DataPtr data_;
  Device device_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace strata
