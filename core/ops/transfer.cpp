#include "core/ops/transfer.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

#ifdef STRATA_HAS_CUDA
#include "core/cuda/cuda_transfer.h"
#endif

namespace strata {

void copy_across_devices(const Tensor& src, const Tensor& dst) {
#ifdef STRATA_HAS_CUDA
  cuda::copy_between(src, dst);
#else
  STRATA_FAIL("copy from ", src.device().str(), " to ", dst.device().str(),
              ": this build has no CUDA backend; configure with -DSTRATA_CUDA=ON");
#endif
}

void check_same_device(const char* op, const char* ref_name, const Tensor& ref, const char* name,
                       const Tensor& t) {
  if (!t.defined() || t.device() == ref.device()) return;
  STRATA_FAIL(op, ": ", ref_name, " is on ", ref.device().str(), " and ", name, " on ",
              t.device().str(), "; move one with .to(device)");
}

Tensor follow_device(const Tensor& t, const Tensor& ref) {
  if (!t.defined() || !ref.defined() || t.device() == ref.device() || !t.device().is_cpu() ||
      t.requires_grad())
    return t;
  return to_device(t, ref.device());
}

Tensor to_device(const Tensor& x, Device device) {
  const Device from = x.device();
  const bool record = GradMode::is_enabled() && x.requires_grad();
  Tensor out;
  if (from == device) {
    if (!record) return x;
    // Same device: share the storage, but give autograd a node so the op shows in the graph.
    out = make_view(x, x.shape(), x.strides(), x.offset());
  } else {
    out = Tensor::empty(x.shape(), x.dtype(), device);
    copy_across_devices(x, out);
  }
  autograd::record(
      "to_device", {x}, {&out}, {},
      [from](const std::vector<Tensor>& g, const std::vector<Tensor>&,
             const std::vector<bool>&) -> std::vector<Tensor> { return {to_device(g[0], from)}; });
  return out;
}

}  // namespace strata
