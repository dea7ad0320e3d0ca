#include "core/kernels/cuda/cublas_handle.h"

#include <array>
#include <mutex>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"

namespace strata::cuda {

namespace detail {
void fail_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  STRATA_FAIL("cuBLAS error ", cublasGetStatusName(status), " (", cublasGetStatusString(status),
              ") in ", expr, " at ", file, ":", line);
}
}  // namespace detail

namespace {

// NVIDIA's recommendation for Hopper: smaller workspaces rule out the split-K and stream-K
// kernels that the skinny GEMMs of a transformer (e.g. the weight gradients) need.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int kMaxDevices = 64;

struct Slot {
  std::once_flag once;
  BlasHandles handles;
};

// Never destroyed: the handles would be torn down after the CUDA runtime at exit, which fails;
// the driver releases everything with the process.
std::array<Slot, kMaxDevices>& slots() {
  static auto* s = new std::array<Slot, kMaxDevices>();
  return *s;
}

BlasHandles create(int device) {
  DeviceGuard guard(device);
  BlasHandles h;
  STRATA_CUBLAS_CHECK(cublasLtCreate(&h.lt));
  STRATA_CUBLAS_CHECK(cublasCreate(&h.blas));
  STRATA_CUDA_CHECK(cudaMalloc(&h.workspace, kWorkspaceBytes));
  h.workspace_bytes = kWorkspaceBytes;
  STRATA_CUBLAS_CHECK(cublasSetStream(h.blas, stream(device)));
  // After cublasSetStream, which resets the workspace to cuBLAS's own.
  STRATA_CUBLAS_CHECK(cublasSetWorkspace(h.blas, h.workspace, h.workspace_bytes));
  return h;
}

}  // namespace

const BlasHandles& blas_handles(int device) {
  STRATA_CHECK(device >= 0 && device < kMaxDevices, "cuBLAS: device index ", device,
               " is out of range [0, ", kMaxDevices, ")");
  Slot& slot = slots()[size_t(device)];
  std::call_once(slot.once, [&] { slot.handles = create(device); });
  return slot.handles;
}

}  // namespace strata::cuda
