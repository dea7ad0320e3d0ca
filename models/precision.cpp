#include "models/precision.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

Precision Precision::parse(std::string_view name, std::string_view what) {
  if (name == "f32") return f32();
  if (name == "bf16") return bf16();
  STRATA_FAIL(what, ": unknown precision '", name,
              "'; valid: f32 (everything in f32), bf16 (bf16 compute with f32 master weights, "
              "optimizer state, norms, softmax and loss)");
}

std::vector<std::string> Precision::names() {
  return {"f32", "bf16"};
}

std::string Precision::name() const {
  if (!mixed()) return "f32";
  if (residual == DType::f32) return "bf16";
  return "bf16 (residual " + std::string(dtype_name(residual)) + ")";
}

Tensor Precision::operand(const Tensor& x) const {
  if (!mixed() || !x.defined() || x.dtype() != DType::f32) return x;
  return x.to(compute);
}

Tensor Precision::residual_in(const Tensor& x) const {
  if (!mixed() || !x.defined() || x.dtype() == residual) return x;
  if (x.dtype() != DType::f32 && x.dtype() != DType::bf16) return x;
  return x.to(residual);
}

Tensor mixed_linear(const Precision& p, const Tensor& x, const Tensor& w, const Tensor& b) {
  if (!p.mixed()) return linear(x, w, b);
  return linear(p.operand(x), p.operand(w), p.operand(b));
}

Tensor norm_input(const Tensor& x, const Tensor& weight) {
  if (x.dtype() == DType::bf16 && weight.defined() && weight.dtype() == DType::f32)
    return x.to(DType::f32);
  return x;
}

Tensor loss_input(const Tensor& x) {
  return x.dtype() == DType::bf16 ? x.to(DType::f32) : x;
}

DType attention_dtype(const Tensor& q) {
  return q.dtype() == DType::bf16 && q.device().is_cpu() ? DType::f32 : q.dtype();
}

}  // namespace strata::models
