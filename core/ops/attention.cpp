// attention: fused, block-wise (flash-style) scaled-dot-product attention with additive bias,
// causal and key-padding masks.
#include <cmath>

#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"

namespace strata {

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& opt_in) {
  AttentionOptions opt = opt_in;
  opt.bias = follow_device(opt.bias, q);
  opt.key_padding_mask = follow_device(opt.key_padding_mask, q);
  STRATA_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
               "attention: expected q [B,H,Lq,D], k and v [B,H,Lk,D]; got ", shape_str(q.shape()),
               ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  check_same_device("attention", "q", q, "k", k);
  check_same_device("attention", "q", q, "v", v);
  check_same_device("attention", "q", q, "bias", opt.bias);
  check_same_device("attention", "q", q, "key_padding_mask", opt.key_padding_mask);
  const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), D = q.size(3), Lk = k.size(2);
  STRATA_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == D && v.shape() == k.shape(),
               "attention: k ", shape_str(k.shape()), " and v ", shape_str(v.shape()), " must be [",
               B, ", ", H, ", Lk, ", D, "] to match q ", shape_str(q.shape()));
  STRATA_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && is_floating(q.dtype()),
               "attention: q, k, v must share one floating dtype");
  STRATA_CHECK(q.dtype() != DType::bf16 || !q.device().is_cpu(),
               "attention: bf16 is not supported by the CPU kernel yet; compute attention in f32");
  Tensor bias;
  if (opt.bias.defined()) {
    STRATA_CHECK(opt.bias.dtype() == q.dtype(), "attention: bias dtype ",
                 dtype_name(opt.bias.dtype()), " differs from q's ", dtype_name(q.dtype()));
    const Shape full{B, H, Lq, Lk};
    STRATA_CHECK(
        opt.bias.dim() <= 4 && broadcast_shapes(opt.bias.shape(), full, "attention bias") == full,
        "attention: bias ", shape_str(opt.bias.shape()), " does not broadcast to [", B, ", ", H,
        ", ", Lq, ", ", Lk, "]");
    bias = opt.bias;
  }
  Tensor mask;
  if (opt.key_padding_mask.defined()) {
    STRATA_CHECK(
        opt.key_padding_mask.dtype() == DType::b8 && opt.key_padding_mask.shape() == Shape({B, Lk}),
        "attention: key_padding_mask must be bool [", B, ", ", Lk, "], got ",
        shape_str(opt.key_padding_mask.shape()), " ", dtype_name(opt.key_padding_mask.dtype()));
    mask = opt.key_padding_mask.contiguous();
  }
  auto inner = [](const Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); };
  Tensor qc = inner(q), kc = inner(k), vc = inner(v);
  AttentionParams p{opt.scale < 0 ? 1.0 / std::sqrt(double(D)) : opt.scale, opt.causal};
  const DType acc = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = empty({B, H, Lq, D}, q.dtype(), q.device());
  Tensor lse = empty({B, H, Lq}, acc, q.device());
  Tensor bias_view = bias.defined() ? broadcast_to(bias, {B, H, Lq, Lk}) : Tensor();
  backend_for(q.device()).attention(qc, kc, vc, bias_view, mask, p, out, lse);
  const Shape bias_shape = bias.defined() ? bias.shape() : Shape{};
  autograd::record(
      "attention", {qc, kc, vc, bias}, {&out}, {qc, kc, vc, bias, mask, out, lse},
      [p, bias_shape, B, H, Lq, Lk](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                                    const std::vector<bool>& needs) -> std::vector<Tensor> {
        // The saved tensors, in record's order.
        const Tensor &qs = s[0], &ks = s[1], &vs = s[2], &bias_s = s[3], &mask_s = s[4],
                     &out_s = s[5], &lse_s = s[6];
        Tensor dq = empty(qs.shape(), qs.dtype(), qs.device());
        Tensor dk = empty(ks.shape(), ks.dtype(), ks.device());
        Tensor dv = empty(vs.shape(), vs.dtype(), vs.device());
        Tensor dbias;
        Tensor bias_b = bias_s.defined() ? broadcast_to(bias_s, {B, H, Lq, Lk}) : Tensor();
        if (needs[3]) {
          // The kernel sums over broadcast batch and head dims (stride 0) but writes every
          // (query, key) pair; sum_to below folds broadcast query or key dims.
          dbias = empty({bias_b.stride(0) == 0 ? 1 : B, bias_b.stride(1) == 0 ? 1 : H, Lq, Lk},
                        qs.dtype(), qs.device());
        }
        backend_for(qs.device())
            .attention_backward(qs, ks, vs, bias_b, mask_s, p, out_s, lse_s, g[0].contiguous(), dq,
                                dk, dv, dbias);
        if (dbias.defined()) dbias = sum_to(dbias, bias_shape);
        return {dq, dk, dv, dbias};
      });
  return out;
}

}  // namespace strata
