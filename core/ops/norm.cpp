// layer_norm and rms_norm: fused over the last dim, statistics in f32 (f64 for f64 inputs).
#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"

namespace strata {

namespace {

void check_norm_args(const char* op, const Tensor& x, const Tensor& w, const Tensor& b) {
  STRATA_CHECK(is_floating(x.dtype()) && x.dim() >= 1, op,
               ": expected a floating tensor of rank >= 1, got ", shape_str(x.shape()), " ",
               dtype_name(x.dtype()));
  const int64_t n = x.size(-1);
  check_same_device(op, "input", x, "weight", w);
  check_same_device(op, "input", x, "bias", b);
  for (const Tensor* p : {&w, &b})
    if (p->defined())
      STRATA_CHECK(p->dim() == 1 && p->size(0) == n && p->dtype() == x.dtype(), op,
                   ": weight/bias must be [", n, "] ", dtype_name(x.dtype()), ", got ",
                   shape_str(p->shape()), " ", dtype_name(p->dtype()));
}

DType stat_dtype(DType t) {
  return t == DType::f64 ? DType::f64 : DType::f32;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_norm_args("layer_norm", x, weight, bias);
  Tensor xc = x.contiguous();
  Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  Tensor mean = empty(rows_shape, stat_dtype(x.dtype()), x.device());
  Tensor rstd = empty(rows_shape, stat_dtype(x.dtype()), x.device());
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  backend_for(x.device()).layer_norm(xc.detach(), w, b, eps, y, mean, rstd);
  autograd::record(
      "layer_norm", {xc, w, b}, {&y}, {xc, w, mean, rstd},
      [](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
         const std::vector<bool>& needs) -> std::vector<Tensor> {
        const Tensor &xs = s[0], &ws = s[1], &mean = s[2], &rstd = s[3];
        Tensor dx = needs[0] ? empty(xs.shape(), xs.dtype(), xs.device()) : Tensor();
        Tensor dw = needs[1] ? empty({xs.size(-1)}, xs.dtype(), xs.device()) : Tensor();
        Tensor db = needs[2] ? empty({xs.size(-1)}, xs.dtype(), xs.device()) : Tensor();
        backend_for(xs.device())
            .layer_norm_backward(xs, ws, mean, rstd, g[0].contiguous(), dx, dw, db);
        return {dx, dw, db};
      });
  return y;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_norm_args("rms_norm", x, weight, Tensor());
  Tensor xc = x.contiguous();
  Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  Tensor rstd = empty(rows_shape, stat_dtype(x.dtype()), x.device());
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  backend_for(x.device()).rms_norm(xc.detach(), w, eps, y, rstd);
  autograd::record(
      "rms_norm", {xc, w}, {&y}, {xc, w, rstd},
      [](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
         const std::vector<bool>& needs) -> std::vector<Tensor> {
        const Tensor &xs = s[0], &ws = s[1], &rstd = s[2];
        Tensor dx = needs[0] ? empty(xs.shape(), xs.dtype(), xs.device()) : Tensor();
        Tensor dw = needs[1] ? empty({xs.size(-1)}, xs.dtype(), xs.device()) : Tensor();
        backend_for(xs.device()).rms_norm_backward(xs, ws, rstd, g[0].contiguous(), dx, dw);
        return {dx, dw};
      });
  return y;
}

}  // namespace strata
