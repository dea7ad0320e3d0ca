#pragma once
// The explicit runtime context: the one place that holds process-wide settings (thread count,
// GEMM kernel choice) and the device allocators. Everything else is passed explicitly.
#include <cstdint>
#include <memory>
#include <string>

#include "core/allocator.h"
#include "core/device.h"
#include "core/kernels/cpu/gemm/gemm.h"

namespace strata {

class Runtime {
 public:
  static Runtime& get();

  // One setting governs OpenMP, OpenBLAS and oneDNN together.
  void set_num_threads(int n);
  int num_threads() const { return num_threads_; }

  void set_gemm_kernel(gemm::Kernel k);
  gemm::Kernel gemm_kernel() const { return gemm_kernel_; }

  Allocator& allocator(Device d);
  MemoryStats memory_stats(Device d = Device::cpu()) { return allocator(d).stats(); }

  // A summary for logs: threads, GEMM kernel, CPU features.
  std::string describe() const;

 private:
  Runtime();
  int num_threads_ = 1;
  gemm::Kernel gemm_kernel_ = gemm::Kernel::Auto;
  CachingCpuAllocator cpu_allocator_;
};

// Idle OpenMP threads that spin between parallel regions slow a training step down on machines
// whose cores are shared or quota-limited (measured on the 2-vCPU development VMs: a decoder step
// at 2 threads took 925 ms with libgomp's default spin-then-sleep and 571 ms with passive waiting).
// libgomp reads OMP_WAIT_POLICY once, when it is loaded, so a program that wants passive waiting
// must start with it set: this re-executes the program (argv as given, same pid) with
// OMP_WAIT_POLICY=passive unless the environment already chooses a policy. Call it first in main.
void prefer_passive_omp_wait(char** argv);

}  // namespace strata
