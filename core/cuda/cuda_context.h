#pragma once
// The CUDA side of the runtime context: which GPUs exist, each device's compute stream, and a
// guard that makes a device current for a scope. Kernels of the CUDA backend run on the stream of
// the device that holds their output, so work on one device is ordered without host syncs; host
// reads (Tensor::item, copies to the CPU) synchronise that stream.
#include <cuda_runtime.h>

#include <string>

namespace strata::cuda {

// GPUs this process can use; 0 when there is no driver or no device (never throws), which is how
// the `cuda` tests decide to report themselves as not run.
int device_count();

// Throws strata::Error unless cuda:`device` exists, naming how many GPUs this process sees.
void check_device(int device);

// The GPUs for logs (Runtime::describe): "gpus=1 cuda:0=NVIDIA H100 ... (sm_90, 79.1 GiB)".
std::string describe_devices();

// The device's compute stream (created on first use, non-blocking with respect to the legacy
// default stream). It lives in the device's state in the Runtime (core/cuda/device_state.h).
cudaStream_t stream(int device);

// Waits until all work queued on the device's compute stream has finished.
void synchronize(int device);

// Makes `device` current for the lifetime of the guard and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace strata::cuda
