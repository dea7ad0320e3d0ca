#include "core/runtime.h"

#include <cblas.h>
#include <omp.h>

#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "core/cpu_features.h"
#include "core/error.h"

#ifdef STRATA_HAS_CUDA
#include "core/cuda/cuda_context.h"
#include "core/cuda/device_state.h"
#include "core/cuda/pinned_allocator.h"
#endif

namespace strata {

Runtime& Runtime::get() {
  static Runtime runtime;
  return runtime;
}

Runtime::Runtime() {
  set_num_threads(omp_get_max_threads());
}

void Runtime::set_num_threads(int n) {
  STRATA_CHECK(n >= 1, "set_num_threads: need at least one thread, got ", n);
  num_threads_ = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

void Runtime::set_gemm_kernel(gemm::Kernel k) {
  STRATA_CHECK(gemm::kernel_available(k), "GEMM kernel '", gemm::kernel_name(k),
               "' cannot run on this CPU (", cpu_features_string(), ")");
  gemm_kernel_ = k;
}

Allocator& Runtime::allocator(Device d) {
  if (d.is_cpu()) return cpu_allocator_;
#ifdef STRATA_HAS_CUDA
  return cuda_device(d.index).allocator;
#else
  STRATA_FAIL("device ", d.str(),
              ": this build has no CUDA backend; configure with -DSTRATA_CUDA=ON "
              "(scripts/build.sh does so when /usr/local/cuda/bin/nvcc exists)");
#endif
}

int Runtime::cuda_device_count() const {
#ifdef STRATA_HAS_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

cuda::DeviceState& Runtime::cuda_device(int index) {
#ifdef STRATA_HAS_CUDA
  if (index >= 0 && index < kMaxCudaDevices) {
    if (cuda::DeviceState* s = cuda_devices_[index].load(std::memory_order_acquire)) return *s;
  }
  cuda::check_device(index);
  STRATA_CHECK(index < kMaxCudaDevices, "device cuda:", index, ": at most ", kMaxCudaDevices,
               " GPUs per process are supported");
  std::lock_guard lock(device_mutex_);
  cuda::DeviceState* s = cuda_devices_[index].load(std::memory_order_relaxed);
  if (!s) {
    s = new cuda::DeviceState(index);  // never freed: see core/cuda/device_state.h
    cuda_devices_[index].store(s, std::memory_order_release);
  }
  return *s;
#else
  STRATA_FAIL("device cuda:", index,
              ": this build has no CUDA backend; configure with -DSTRATA_CUDA=ON");
#endif
}

Allocator& Runtime::pinned_allocator() {
#ifdef STRATA_HAS_CUDA
  if (Allocator* a = pinned_allocator_.load(std::memory_order_acquire)) return *a;
  STRATA_CHECK(cuda::device_count() > 0,
               "pinned host memory: no CUDA device is visible to this process; use ordinary CPU "
               "tensors (pinning only speeds up copies to a GPU)");
  std::lock_guard lock(device_mutex_);
  Allocator* a = pinned_allocator_.load(std::memory_order_relaxed);
  if (!a) {
    a = new cuda::CachingPinnedAllocator();  // never freed, as the device state
    pinned_allocator_.store(a, std::memory_order_release);
  }
  return *a;
#else
  STRATA_FAIL(
      "pinned host memory needs the CUDA backend (configure with -DSTRATA_CUDA=ON); use "
      "ordinary CPU tensors");
#endif
}

std::string Runtime::describe() const {
  std::ostringstream os;
  os << "threads=" << num_threads_ << " gemm=" << gemm::kernel_name(gemm::resolve(gemm_kernel_))
     << " (" << gemm::describe(gemm_kernel_) << ") cpu=" << cpu_features_string();
#ifdef STRATA_HAS_CUDA
  os << " " << cuda::describe_devices();
#endif
  return os.str();
}

void prefer_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc, say): carry on with the policy libgomp already chose.
}

}  // namespace strata
