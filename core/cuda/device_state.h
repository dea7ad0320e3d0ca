#pragma once
// What the Runtime keeps for one GPU: its compute stream and its caching allocator. Created on
// first use of the device (Runtime::cuda_device) and never destroyed: at process exit the CUDA
// runtime may be torn down before static destructors run, and the driver reclaims everything.
#include <cuda_runtime.h>

#include "core/cuda/cuda_allocator.h"

namespace strata::cuda {

struct DeviceState {
  explicit DeviceState(int device);  // creates the stream (core/cuda/cuda_context.cpp)
  DeviceState(const DeviceState&) = delete;
  DeviceState& operator=(const DeviceState&) = delete;

  const int device;
  cudaStream_t stream = nullptr;
  CachingCudaAllocator allocator;
};

}  // namespace strata::cuda
