#include "core/ops/linalg.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"

namespace strata {

namespace {

// Views t [..., R, C] as [B, R, C] for a batch of `batch` numel: a broadcast (numel 1) batch gets
// batch stride 0, a full one is reshaped (copied only if its layout needs it).
Tensor as_batch3(const Tensor& t, const Shape& batch_shape) {
  const int64_t r = t.shape()[t.dim() - 2], c = t.shape()[t.dim() - 1];
  Shape tb(t.shape().begin(), t.shape().end() - 2);
  const int64_t B = numel(batch_shape);
  if (numel(tb) == 1) {
    Tensor m = t.dim() == 2 ? t : reshape(t, {r, c});
    return make_view(m, {B, r, c}, {0, m.strides()[0], m.strides()[1]}, m.offset());
  }
  Shape full = batch_shape;
  full.push_back(r);
  full.push_back(c);
  Tensor e = tb == batch_shape ? t : broadcast_to(t, full).contiguous();
  // Keep a transposed inner layout (stride(-2) == 1) when flattening the batch allows it.
  if (e.strides()[e.dim() - 2] == 1 && e.strides()[e.dim() - 1] == r) {
    Tensor tt = reshape(transpose(e, -1, -2), {B, c, r});
    return transpose(tt, -1, -2);
  }
  return reshape(e, {B, r, c});
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  STRATA_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected tensors of rank >= 2, got ",
               shape_str(a.shape()), " and ", shape_str(b.shape()),
               "; unsqueeze a vector to a matrix first");
  STRATA_CHECK(a.dtype() == b.dtype() && is_floating(a.dtype()), "matmul: dtypes ",
               dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
               "; expected the same floating dtype");
  check_same_device("matmul", "a", a, "b", b);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  STRATA_CHECK(b.size(-2) == K, "matmul: inner dims differ: ", shape_str(a.shape()), " x ",
               shape_str(b.shape()), " (", K, " vs ", b.size(-2), ")");
  const Shape ab(a.shape().begin(), a.shape().end() - 2);
  const Shape bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ab, bb, "matmul");
  const int64_t B = numel(batch);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty(out_shape, a.dtype(), a.device());
  Tensor a3, b3;
  {
    NoGradGuard no_grad;  // layout plumbing only
    a3 = as_batch3(a, batch);
    b3 = as_batch3(b, batch);
  }
  backend_for(a.device()).matmul(a3, false, b3, false, out.view({B, M, N}).detach(), 1.0, 0.0);
  const Shape sa = a.shape(), sb = b.shape();
  autograd::record("matmul", {a, b}, {&out}, {a, b},
                   [sa, sb](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                            const std::vector<bool>& needs) -> std::vector<Tensor> {
                     Tensor ga, gb;
                     if (needs[0]) ga = sum_to(matmul(g[0], s[1].transpose(-1, -2)), sa);
                     if (needs[1]) gb = sum_to(matmul(s[0].transpose(-1, -2), g[0]), sb);
                     return {ga, gb};
                   });
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  STRATA_CHECK(w.dim() == 2, "linear: weight must be [out, in], got ", shape_str(w.shape()));
  check_same_device("linear", "input", x, "weight", w);
  check_same_device("linear", "input", x, "bias", bias);
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", shape_str(x.shape()),
               " does not end in the weight's in-features ", w.size(1), " (weight ",
               shape_str(w.shape()), ")");
  STRATA_CHECK(x.dtype() == w.dtype(), "linear: input is ", dtype_name(x.dtype()), ", weight is ",
               dtype_name(w.dtype()));
  const int64_t in = w.size(1), outf = w.size(0);
  if (bias.defined())
    STRATA_CHECK(bias.dim() == 1 && bias.size(0) == outf && bias.dtype() == w.dtype(),
                 "linear: bias must be [", outf, "] ", dtype_name(w.dtype()), ", got ",
                 shape_str(bias.shape()), " ", dtype_name(bias.dtype()));
  Shape out_shape = x.shape();
  out_shape.back() = outf;
  Tensor x2;
  {
    NoGradGuard no_grad;
    x2 = reshape(x, {-1, in});
  }
  const int64_t rows = x2.size(0);
  Tensor out = empty(out_shape, x.dtype(), x.device());
  Tensor out2 = make_view(out, {1, rows, outf}, {0, outf, 1}, 0);
  Backend& be = backend_for(x.device());
  double beta = 0.0;
  if (bias.defined()) {
    be.copy(broadcast_to(bias, {1, rows, outf}), out2);
    beta = 1.0;
  }
  Tensor wt = make_view(w, {1, in, outf}, {0, w.stride(1), w.stride(0)}, w.offset());
  be.matmul(make_view(x2, {1, rows, in}, {0, x2.stride(0), x2.stride(1)}, x2.offset()), false, wt,
            false, out2, 1.0, beta);
  const Shape xs = x.shape();
  autograd::record("linear", {x, w, bias}, {&out}, {x2, w},
                   [xs, in, outf](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                                  const std::vector<bool>& needs) -> std::vector<Tensor> {
                     Tensor g2 = reshape(g[0], {-1, outf});
                     Tensor gx, gw, gb;
                     if (needs[0]) gx = reshape(matmul(g2, s[1]), xs);
                     if (needs[1]) gw = matmul(g2.transpose(0, 1), s[0]);
                     if (needs[2]) gb = sum(g2, {0});
                     return {gx, gw, gb};
                   });
  return out;
}

}  // namespace strata
