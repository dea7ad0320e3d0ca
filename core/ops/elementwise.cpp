#include "core/ops/elementwise.h"

#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"

namespace strata {

namespace {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg:
      return "neg";
    case UnaryOp::Exp:
      return "exp";
    case UnaryOp::Log:
      return "log";
    case UnaryOp::Sqrt:
      return "sqrt";
    case UnaryOp::Rsqrt:
      return "rsqrt";
    case UnaryOp::Tanh:
      return "tanh";
    case UnaryOp::Sigmoid:
      return "sigmoid";
    case UnaryOp::Relu:
      return "relu";
    case UnaryOp::GeluExact:
      return "gelu";
    case UnaryOp::GeluTanh:
      return "gelu_tanh";
    case UnaryOp::Silu:
      return "silu";
    case UnaryOp::Abs:
      return "abs";
    case UnaryOp::LogSigmoid:
      return "log_sigmoid";
    case UnaryOp::Pow:
      return "pow";
    case UnaryOp::Clamp:
      return "clamp";
    case UnaryOp::Affine:
      return "affine";
    case UnaryOp::Reciprocal:
      return "reciprocal";
    case UnaryOp::Sin:
      return "sin";
    case UnaryOp::Cos:
      return "cos";
    case UnaryOp::Square:
      return "square";
  }
  return "unary";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return "add";
    case BinaryOp::Sub:
      return "sub";
    case BinaryOp::Mul:
      return "mul";
    case BinaryOp::Div:
      return "div";
    case BinaryOp::Maximum:
      return "maximum";
    case BinaryOp::Minimum:
      return "minimum";
    case BinaryOp::Eq:
      return "eq";
    case BinaryOp::Ne:
      return "ne";
    case BinaryOp::Lt:
      return "lt";
    case BinaryOp::Le:
      return "le";
    case BinaryOp::Gt:
      return "gt";
    case BinaryOp::Ge:
      return "ge";
    case BinaryOp::LogicalAnd:
      return "logical_and";
    case BinaryOp::LogicalOr:
      return "logical_or";
  }
  return "binary";
}

bool is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le ||
         op == BinaryOp::Gt || op == BinaryOp::Ge;
}
bool is_logical(BinaryOp op) {
  return op == BinaryOp::LogicalAnd || op == BinaryOp::LogicalOr;
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  STRATA_CHECK(a.device() == b.device(), op, ": operands are on ", a.device().str(), " and ",
               b.device().str(), "; move one with .to(device)");
}

// Ops whose derivative is cheapest from the output keep the output; the rest keep the input.
bool backward_uses_output(UnaryOp op) {
  return op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Tanh ||
         op == UnaryOp::Sigmoid || op == UnaryOp::Reciprocal;
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, UnaryParams p) {
  const char* name = unary_name(op);
  STRATA_CHECK(is_floating(x.dtype()) || op == UnaryOp::Neg || op == UnaryOp::Abs ||
                   op == UnaryOp::Affine || op == UnaryOp::Square || op == UnaryOp::Clamp,
               name, ": expected a floating tensor, got ", dtype_name(x.dtype()));
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).unary(op, x, out, p);
  const bool use_out = backward_uses_output(op);
  autograd::record(name, {x}, {&out}, {use_out ? Tensor() : x, use_out ? out : Tensor()},
                   [op, p](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                           const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor dx = empty(g[0].shape(), g[0].dtype(), g[0].device());
                     const Tensor& xs = s[0].defined() ? s[0] : s[1];
                     const Tensor& ys = s[1].defined() ? s[1] : s[0];
                     backend_for(dx.device()).unary_backward(op, xs, ys, g[0], dx, p);
                     return {dx};
                   });
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  const char* name = binary_name(op);
  const Tensor a = follow_device(a_in, b_in);
  const Tensor b = follow_device(b_in, a);
  check_same_device(a, b, name);
  STRATA_CHECK(a.dtype() == b.dtype(), name, ": dtypes differ (", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), "); convert one with .to(dtype)");
  if (is_logical(op))
    STRATA_CHECK(a.dtype() == DType::b8, name, ": expected bool tensors, got ",
                 dtype_name(a.dtype()));
  else
    STRATA_CHECK(a.dtype() != DType::b8 || op == BinaryOp::Eq || op == BinaryOp::Ne, name,
                 ": arithmetic on bool tensors; convert with .to(dtype) first");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  const DType out_dtype = is_comparison(op) || is_logical(op) ? DType::b8 : a.dtype();
  Tensor out = empty(shape, out_dtype, a.device());
  backend_for(a.device()).binary(op, broadcast_to(a, shape), broadcast_to(b, shape), out);
  if (out_dtype == DType::b8) return out;

  const Shape sa = a.shape(), sb = b.shape();
  switch (op) {
    case BinaryOp::Add:
    case BinaryOp::Sub:
      autograd::record(name, {a, b}, {&out}, {},
                       [op, sa, sb](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                                    const std::vector<bool>& needs) -> std::vector<Tensor> {
                         Tensor ga, gb;
                         if (needs[0]) ga = sum_to(g[0], sa);
                         if (needs[1]) gb = sum_to(op == BinaryOp::Sub ? -g[0] : g[0], sb);
                         return {ga, gb};
                       });
      break;
    case BinaryOp::Mul:
      autograd::record(name, {a, b}, {&out}, {a, b},
                       [sa, sb](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                                const std::vector<bool>& needs) -> std::vector<Tensor> {
                         Tensor ga, gb;
                         if (needs[0]) ga = sum_to(g[0] * s[1], sa);
                         if (needs[1]) gb = sum_to(g[0] * s[0], sb);
                         return {ga, gb};
                       });
      break;
    case BinaryOp::Div:
      autograd::record(name, {a, b}, {&out}, {b, out},
                       [sa, sb](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                                const std::vector<bool>& needs) -> std::vector<Tensor> {
                         Tensor ga, gb;
                         Tensor gdivb = g[0] / s[0];
                         if (needs[0]) ga = sum_to(gdivb, sa);
                         if (needs[1]) gb = sum_to(-(gdivb * s[1]), sb);
                         return {ga, gb};
                       });
      break;
    case BinaryOp::Maximum:
    case BinaryOp::Minimum:
      // Ties split the gradient evenly, so the result is symmetric in a and b.
      autograd::record(name, {a, b}, {&out}, {a, b},
                       [op, sa, sb](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                                    const std::vector<bool>& needs) -> std::vector<Tensor> {
                         const Tensor& x = s[0];
                         const Tensor& y = s[1];
                         Tensor wins = op == BinaryOp::Maximum ? gt(x, y) : lt(x, y);
                         Tensor wa = wins.to(g[0].dtype()) + eq(x, y).to(g[0].dtype()) * 0.5;
                         Tensor ga, gb;
                         if (needs[0]) ga = sum_to(g[0] * wa, sa);
                         if (needs[1]) gb = sum_to(g[0] * (1.0 - wa), sb);
                         return {ga, gb};
                       });
      break;
    default:
      break;
  }
  return out;
}

Tensor neg(const Tensor& x) {
  return unary(UnaryOp::Neg, x);
}
Tensor exp(const Tensor& x) {
  return unary(UnaryOp::Exp, x);
}
Tensor log(const Tensor& x) {
  return unary(UnaryOp::Log, x);
}
Tensor sqrt(const Tensor& x) {
  return unary(UnaryOp::Sqrt, x);
}
Tensor rsqrt(const Tensor& x) {
  return unary(UnaryOp::Rsqrt, x);
}
Tensor tanh(const Tensor& x) {
  return unary(UnaryOp::Tanh, x);
}
Tensor sigmoid(const Tensor& x) {
  return unary(UnaryOp::Sigmoid, x);
}
Tensor relu(const Tensor& x) {
  return unary(UnaryOp::Relu, x);
}
Tensor gelu(const Tensor& x, bool tanh_approx) {
  return unary(tanh_approx ? UnaryOp::GeluTanh : UnaryOp::GeluExact, x);
}
Tensor silu(const Tensor& x) {
  return unary(UnaryOp::Silu, x);
}
Tensor abs(const Tensor& x) {
  return unary(UnaryOp::Abs, x);
}
Tensor log_sigmoid(const Tensor& x) {
  return unary(UnaryOp::LogSigmoid, x);
}
Tensor pow(const Tensor& x, double e) {
  return unary(UnaryOp::Pow, x, {e, 0});
}
Tensor clamp(const Tensor& x, double lo, double hi) {
  STRATA_CHECK(lo <= hi, "clamp: lower bound ", lo, " is above upper bound ", hi);
  return unary(UnaryOp::Clamp, x, {lo, hi});
}
Tensor reciprocal(const Tensor& x) {
  return unary(UnaryOp::Reciprocal, x);
}
Tensor square(const Tensor& x) {
  return unary(UnaryOp::Square, x);
}
Tensor sin(const Tensor& x) {
  return unary(UnaryOp::Sin, x);
}
Tensor cos(const Tensor& x) {
  return unary(UnaryOp::Cos, x);
}
Tensor affine(const Tensor& x, double scale, double shift) {
  return unary(UnaryOp::Affine, x, {scale, shift});
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Add, a, b);
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Sub, a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Mul, a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Div, a, b);
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Maximum, a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Minimum, a, b);
}
Tensor eq(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Eq, a, b);
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Ne, a, b);
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Lt, a, b);
}
Tensor le(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Le, a, b);
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Gt, a, b);
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Ge, a, b);
}
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::LogicalAnd, a, b);
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::LogicalOr, a, b);
}
Tensor logical_not(const Tensor& a) {
  return binary(BinaryOp::Eq, a, scalar_tensor(0, DType::b8, a.device()));
}

Tensor where(const Tensor& cond_in, const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = follow_device(a_in, b_in);
  const Tensor b = follow_device(b_in, a);
  const Tensor cond = follow_device(cond_in, a);
  check_same_device(a, b, "where");
  check_same_device(cond, a, "where");
  STRATA_CHECK(cond.dtype() == DType::b8, "where: condition must be bool, got ",
               dtype_name(cond.dtype()));
  STRATA_CHECK(a.dtype() == b.dtype(), "where: branches have dtypes ", dtype_name(a.dtype()),
               " and ", dtype_name(b.dtype()));
  const Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(shape, a.dtype(), a.device());
  backend_for(a.device())
      .where(broadcast_to(cond, shape), broadcast_to(a, shape), broadcast_to(b, shape), out);
  const Shape sa = a.shape(), sb = b.shape();
  autograd::record("where", {a, b}, {&out}, {cond},
                   [sa, sb](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                            const std::vector<bool>& needs) -> std::vector<Tensor> {
                     Tensor zero = zeros({}, g[0].dtype(), g[0].device());
                     Tensor ga, gb;
                     if (needs[0]) ga = sum_to(where(s[0], g[0], zero), sa);
                     if (needs[1]) gb = sum_to(where(s[0], zero, g[0]), sb);
                     return {ga, gb};
                   });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, scalar_tensor(value, x.dtype(), x.device()), x);
}

Tensor gated(GatedAct act, const Tensor& gate, const Tensor& up) {
  check_same_device(gate, up, "gated");
  STRATA_CHECK(gate.shape() == up.shape() && gate.dtype() == up.dtype(), "gated: gate ",
               shape_str(gate.shape()), " ", dtype_name(gate.dtype()), " and up ",
               shape_str(up.shape()), " ", dtype_name(up.dtype()), " must match");
  Tensor g = gate.contiguous(), u = up.contiguous();
  Tensor out = empty(g.shape(), g.dtype(), g.device());
  backend_for(g.device()).gated(act, g, u, out);
  autograd::record(
      "gated", {gate, up}, {&out}, {g, u},
      [act](const std::vector<Tensor>& gr, const std::vector<Tensor>& s,
            const std::vector<bool>&) -> std::vector<Tensor> {
        Tensor dg = empty(s[0].shape(), s[0].dtype(), s[0].device());
        Tensor du = empty(s[0].shape(), s[0].dtype(), s[0].device());
        backend_for(dg.device()).gated_backward(act, s[0], s[1], gr[0].contiguous(), dg, du);
        return {dg, du};
      });
  return out;
}

Tensor operator-(const Tensor& x) {
  return neg(x);
}
Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
Tensor operator+(const Tensor& a, double s) {
  return affine(a, 1.0, s);
}
Tensor operator-(const Tensor& a, double s) {
  return affine(a, 1.0, -s);
}
Tensor operator*(const Tensor& a, double s) {
  return affine(a, s, 0.0);
}
Tensor operator/(const Tensor& a, double s) {
  return affine(a, 1.0 / s, 0.0);
}
Tensor operator+(double s, const Tensor& a) {
  return affine(a, 1.0, s);
}
Tensor operator-(double s, const Tensor& a) {
  return affine(a, -1.0, s);
}
Tensor operator*(double s, const Tensor& a) {
  return affine(a, s, 0.0);
}
Tensor operator/(double s, const Tensor& a) {
  return reciprocal(a) * s;
}

}  // namespace strata
