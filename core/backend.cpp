#include "core/backend.h"

#include "core/kernels/cpu/cpu_backend.h"

#ifdef STRATA_HAS_CUDA
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#endif

namespace strata {

Backend& backend_for(Device device) {
  static cpu::CpuBackend cpu_backend;  // stateless: a shared instance is safe
  switch (device.type) {
    case DeviceType::CPU:
      return cpu_backend;
    case DeviceType::CUDA: {
#ifdef STRATA_HAS_CUDA
      cuda::check_device(device.index);
      // One instance serves every GPU: each method runs on the stream of its output's device.
      static cuda::CudaBackend cuda_backend;
      return cuda_backend;
#else
      STRATA_FAIL("device ", device.str(),
                  ": this build has no CUDA backend; configure with -DSTRATA_CUDA=ON");
#endif
    }
  }
  STRATA_FAIL("unknown device");
}

}  // namespace strata
