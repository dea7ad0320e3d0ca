#include "core/backend.h"

#include "core/kernels/cpu/cpu_backend.h"

namespace strata {

Backend& backend_for(Device device) {
  static cpu::CpuBackend cpu_backend;  // stateless: a shared instance is safe
  switch (device.type) {
    case DeviceType::CPU:
      return cpu_backend;
    case DeviceType::CUDA:
      STRATA_FAIL("device ", device.str(),
                  ": this build has no CUDA backend; configure with -DSTRATA_CUDA=ON");
  }
  STRATA_FAIL("unknown device");
}

}  // namespace strata
