#pragma once
// The explicit runtime context: the one place that holds process-wide settings (thread count,
// GEMM kernel choice) and the device state (allocators; for each GPU its compute stream).
// Everything else is passed explicitly. The header is the same with and without CUDA.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/allocator.h"
#include "core/device.h"
#include "core/kernels/cpu/gemm/gemm.h"

namespace strata {

namespace cuda {
struct DeviceState;  // core/cuda/device_state.h
}

class Runtime {
 public:
  static Runtime& get();

  // One setting governs OpenMP, OpenBLAS and oneDNN together.
  void set_num_threads(int n);
  int num_threads() const { return num_threads_; }

  void set_gemm_kernel(gemm::Kernel k);
  gemm::Kernel gemm_kernel() const { return gemm_kernel_; }

  // The caching allocator of a device; a GPU's is created on first use. Throws for a GPU in a
  // build without CUDA and for a device index this process does not have.
  Allocator& allocator(Device d);
  MemoryStats memory_stats(Device d = Device::cpu()) { return allocator(d).stats(); }
  // Page-locked host memory (Tensor::empty_pinned): needs the CUDA build and a GPU.
  Allocator& pinned_allocator();

  // GPUs this process can use: 0 in a build without CUDA or on a machine without a GPU.
  int cuda_device_count() const;
  // The state of cuda:`index` (stream, allocator), created on first use. For core/cuda/ only.
  cuda::DeviceState& cuda_device(int index);
  static constexpr int kMaxCudaDevices = 64;

  // A summary for logs: threads, GEMM kernel, CPU features, and the GPUs in a CUDA build.
  std::string describe() const;

 private:
  Runtime();
  int num_threads_ = 1;
  gemm::Kernel gemm_kernel_ = gemm::Kernel::Auto;
  CachingCpuAllocator cpu_allocator_;
  // GPU state and the pinned allocator are created under the mutex and published through the
  // atomics, so the per-kernel lookup of a stream takes no lock. They are never freed (see
  // core/cuda/device_state.h).
  std::mutex device_mutex_;
  std::array<std::atomic<cuda::DeviceState*>, kMaxCudaDevices> cuda_devices_{};
  std::atomic<Allocator*> pinned_allocator_{nullptr};
};

// Idle OpenMP threads that spin between parallel regions slow a training step down on machines
// whose cores are shared or quota-limited (measured on the 2-vCPU development VMs: a decoder step
// at 2 threads took 925 ms with libgomp's default spin-then-sleep and 571 ms with passive waiting).
// libgomp reads OMP_WAIT_POLICY once, when it is loaded, so a program that wants passive waiting
// must start with it set: this re-executes the program (argv as given, same pid) with
// OMP_WAIT_POLICY=passive unless the environment already chooses a policy. Call it first in main.
void prefer_passive_omp_wait(char** argv);

}  // namespace strata
