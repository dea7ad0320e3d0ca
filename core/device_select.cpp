#include "core/device_select.h"

#include <cctype>

#include "core/error.h"
#include "core/runtime.h"

#ifdef STRATA_HAS_CUDA
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#endif

namespace strata {

bool cuda_built() {
#ifdef STRATA_HAS_CUDA
  return true;
#else
  return false;
#endif
}

Device resolve_device(const std::string& spec, const std::string& what, int local_rank) {
  if (spec == "cpu") return Device::cpu();
  const bool any = spec == "cuda";
  int index = -1;
  if (!any) {
    const std::string prefix = "cuda:";
    bool digits = spec.size() > prefix.size() && spec.compare(0, prefix.size(), prefix) == 0 &&
                  spec.size() <= prefix.size() + 4;
    for (size_t i = prefix.size(); digits && i < spec.size(); ++i)
      digits = std::isdigit(static_cast<unsigned char>(spec[i])) != 0;
    STRATA_CHECK(digits, what, ": unknown device '", spec, "'; valid: cpu, cuda, cuda:N");
    index = std::stoi(spec.substr(prefix.size()));
  }
  STRATA_CHECK(cuda_built(), what, " = ", spec,
               ": this Strata was built without CUDA; rebuild with -DSTRATA_CUDA=ON "
               "(scripts/build.sh -DSTRATA_CUDA=ON) or set ",
               what, " = cpu");
  const int count = Runtime::get().cuda_device_count();
  STRATA_CHECK(count > 0, what, " = ", spec,
               ": no CUDA device is visible to this process (no GPU, no driver, or "
               "CUDA_VISIBLE_DEVICES hides them); set ",
               what, " = cpu");
  if (any) return Device::cuda(local_rank % count);
  STRATA_CHECK(index < count, what, " = ", spec, ": only ", count, " CUDA device",
               count == 1 ? " is" : "s are", " visible (cuda:0", count > 1 ? " to cuda:" : "",
               count > 1 ? std::to_string(count - 1) : std::string(), ")");
  return Device::cuda(index);
}

std::string device_name(Device device) {
  if (device.is_cpu()) return "cpu";
#ifdef STRATA_HAS_CUDA
  cudaDeviceProp prop{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device.index));
  return prop.name;
#else
  return device.str();
#endif
}

double nominal_peak_tflops(Device device, DType compute) {
  if (device.is_cpu() || (compute != DType::bf16 && compute != DType::f32)) return 0.0;
  const std::string name = device_name(device);
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  struct Peak {
    double bf16, tf32;
  };
  Peak p{0, 0};
  if (has("H200"))
    p = {989, 494};
  else if (has("H100") && has("PCIe"))
    p = {756, 378};
  else if (has("H100") && has("NVL"))
    p = {835, 418};
  else if (has("H100"))  // SXM ("NVIDIA H100 80GB HBM3")
    p = {989, 494};
  else if (has("A100"))
    p = {312, 156};
  return compute == DType::bf16 ? p.bf16 : p.tf32;
}

void synchronize(Device device) {
  if (device.is_cpu()) return;
#ifdef STRATA_HAS_CUDA
  strata::cuda::synchronize(device.index);
#endif
}

}  // namespace strata
