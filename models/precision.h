#pragma once
// Mixed precision: the dtype a model's forward pass computes in, separate from the dtype its
// parameters are stored in (docs/training.md, "Mixed precision").
//
// Under bf16 the parameters stay f32 (the master weights the optimizer updates and checkpoints
// store). Every matmul casts its operands (activation, weight, bias) to bf16 at use through the
// differentiable cast, so parameter gradients arrive in f32 and accumulate in f32; the matmul
// accumulates in f32 and writes bf16. Activations between matmuls (RoPE, the gated activations,
// attention's q/k/v and output) are bf16. What is numerically sensitive stays f32:
//   - norms read f32 input and f32 weights (norm_input), so statistics, the affine part and the
//     weight gradients are f32;
//   - attention accumulates its scores, softmax and output in f32 in every kernel (bf16 only
//     stores q/k/v and the output);
//   - logits are widened to f32 before the loss (loss_input), so log-sum-exp and the loss are f32;
//   - the residual stream is f32 (Precision::residual; the measurement behind this choice is in
//     docs/training.md).
// Under f32 every helper below is the identity, so f32 runs compute exactly what they did before
// mixed precision existed; f64 models (gradient checks) are never cast either.
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace strata::models {

struct Precision {
  DType compute = DType::f32;   // matmul operands and outputs, activations between matmuls
  DType residual = DType::f32;  // the residual stream between blocks (under bf16 compute)

  static Precision f32() { return {}; }
  // The bf16 recipe `precision = bf16` selects: bf16 compute, f32 residual stream.
  static Precision bf16() { return {DType::bf16, DType::f32}; }
  // "f32" or "bf16"; anything else throws naming `what` (the config key) and the choices.
  static Precision parse(std::string_view name, std::string_view what = "precision");
  static std::vector<std::string> names();  // the values parse accepts
  // "f32" or "bf16"; a mix parse does not offer (a bf16 residual stream, for measurements) is
  // "bf16 (residual bf16)".
  std::string name() const;

  bool mixed() const { return compute == DType::bf16; }
  bool operator==(const Precision&) const = default;

  // A matmul operand in the compute dtype: under bf16 compute an f32 tensor is cast to bf16
  // (differentiably); otherwise x itself.
  Tensor operand(const Tensor& x) const;
  // A sublayer output (or the embedding) entering the residual stream, in the residual dtype
  // under bf16 compute; otherwise x itself.
  Tensor residual_in(const Tensor& x) const;
  // The dtype of a model's residual stream and of its matmul outputs, for a model whose
  // parameters are `param` (pipeline wire specs, KV caches).
  DType residual_dtype(DType param) const { return mixed() ? residual : param; }
  DType compute_dtype(DType param) const { return mixed() ? compute : param; }
};

// y = x W^T + b with all three as matmul operands of `p`: under bf16 compute bf16 inputs, f32
// accumulation and a bf16 result; under f32 strata::linear itself. b may be undefined.
Tensor mixed_linear(const Precision& p, const Tensor& x, const Tensor& w, const Tensor& b = {});

// x as a norm reads it: a bf16 x under an f32 weight is widened to f32 (exact), so the norm's
// statistics, its output and its weight gradients are f32. Otherwise x itself.
Tensor norm_input(const Tensor& x, const Tensor& weight);

// What a loss reads (logits): bf16 widened to f32, so log-sum-exp, the loss and its gradient
// start in f32. Otherwise x itself.
Tensor loss_input(const Tensor& x);

// The dtype the fused attention op runs in for queries q. The CPU attention kernel has no bf16
// path, so there bf16 q/k/v are widened to f32; they hold bf16 values, so the widening is exact
// and the CPU computes the same function as a bf16-storage, f32-accumulate GPU kernel, up to
// summation order. Elsewhere (CUDA) q's own dtype.
DType attention_dtype(const Tensor& q);

}  // namespace strata::models
