#include "core/cuda/cuda_context.h"

#include <sstream>

#include "core/cuda/cuda_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_state.h"
#include "core/runtime.h"

namespace strata::cuda {

int device_count() {
  // The set of visible GPUs is fixed for the life of the process, so it is queried once.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device: not an error for the caller
      return 0;
    }
    return n;
  }();
  return count;
}

void check_device(int device) {
  const int n = device_count();
  if (device >= 0 && device < n) return;
  if (n == 0)
    STRATA_FAIL("device cuda:", device,
                ": no CUDA device is visible to this process (0 GPUs: no GPU, no driver, or "
                "CUDA_VISIBLE_DEVICES hides them); run on the CPU or on a machine with a GPU");
  STRATA_FAIL("device cuda:", device, " does not exist: this process sees ", n, " GPU",
              n == 1 ? "" : "s", " (cuda:0 to cuda:", n - 1,
              "); check the device index and CUDA_VISIBLE_DEVICES");
}

std::string describe_devices() {
  std::ostringstream os;
  const int n = device_count();
  os << "gpus=" << n;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    os << " cuda:" << i << "=" << p.name << " (sm_" << p.major << p.minor << ", "
       << format_bytes(int64_t(p.totalGlobalMem)) << ")";
  }
  return os.str();
}

DeviceState::DeviceState(int d) : device(d), allocator(d) {
  DeviceGuard guard(d);
  // Non-blocking: the legacy default stream (used by libraries we do not control) must not
  // serialise with our kernels.
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
}

cudaStream_t stream(int device) {
  return Runtime::get().cuda_device(device).stream;
}

void synchronize(int device) {
  const cudaStream_t s = stream(device);
  DeviceGuard guard(device);
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
}

DeviceGuard::DeviceGuard(int device) {
  STRATA_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) STRATA_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  // A destructor must not throw; a failure here means the device is already in an error state
  // that the next checked call reports.
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess) return;
  if (current != previous_ && cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
}

}  // namespace strata::cuda
