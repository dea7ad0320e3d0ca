// Element-wise unary/binary/where kernels and their derivatives, over any strides and dtypes.
#include <cmath>

#include "core/kernels/cpu/activation_kernels.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/strided_loop.h"
#include "core/kernels/cpu/vec_math.h"
#include "core/kernels/unary_math.h"

namespace strata::cpu {

namespace {

std::optional<Act> fused_act(UnaryOp op) {
  Act act;
  if (kernels::fused_act(op, act)) return act;
  return std::nullopt;
}

Act to_act(GatedAct a) {
  switch (a) {
    case GatedAct::GeluExact:
      return Act::GeluExact;
    case GatedAct::GeluTanh:
      return Act::GeluTanh;
    case GatedAct::Silu:
      return Act::Silu;
  }
  return Act::Silu;
}

bool all_contiguous(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (!t->is_contiguous()) return false;
  return true;
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  if (auto act = fused_act(op); act && all_contiguous({&x, &out}) && x.dtype() != DType::b8) {
    dispatch_floating(x.dtype(), "unary", [&]<class T>() {
      activation_forward<T>(*act, x.data<T>(), out.data<T>(), x.numel());
    });
    return;
  }
  dispatch_all(x.dtype(), "unary", [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      STRATA_FAIL("unary: not defined for bool tensors");
    } else {
      using C = std::conditional_t<std::is_integral_v<T>, double, compute_t<T>>;
      map1<T, T>(out, x, [op, p](T v) {
        return T(C(kernels::unary_value<scalar::Math, C>(op, C(v), p.a, p.b)));
      });
    }
  });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                                const Tensor& dx, UnaryParams p) {
  if (auto act = fused_act(op); act && all_contiguous({&x, &dy, &dx})) {
    dispatch_floating(x.dtype(), "unary_backward", [&]<class T>() {
      activation_backward<T>(*act, x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel());
    });
    return;
  }
  // Only one of x and y is saved for each op; the other argument aliases it and is not read.
  dispatch_floating(x.dtype(), "unary_backward", [&]<class T>() {
    using C = compute_t<T>;
    map3<T, T, T, T>(dx, x, y, dy, [op, p](T xv, T yv, T g) {
      return T(C(g) * kernels::unary_derivative<scalar::Math, C>(op, C(xv), C(yv), p.a, p.b));
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "binary", [&]<class T>() {
    using C = std::conditional_t<std::is_same_v<T, bool>, int, compute_t<T>>;
    auto arith = [&](auto f) {
      map2<T, T, T>(out, a, b, [f](T x, T y) { return T(f(C(x), C(y))); });
    };
    auto compare = [&](auto f) {
      map2<bool, T, T>(out, a, b, [f](T x, T y) { return f(C(x), C(y)); });
    };
    switch (op) {
      case BinaryOp::Add:
        arith([](C x, C y) { return x + y; });
        break;
      case BinaryOp::Sub:
        arith([](C x, C y) { return x - y; });
        break;
      case BinaryOp::Mul:
        arith([](C x, C y) { return x * y; });
        break;
      case BinaryOp::Div:
        if constexpr (std::is_integral_v<C>) {
          // Integer division by zero would trap; report it instead.
          map2<T, T, T>(out, a, b, [](T x, T y) { return y == T(0) ? T(0) : T(C(x) / C(y)); });
        } else {
          arith([](C x, C y) { return x / y; });
        }
        break;
      case BinaryOp::Maximum:
        arith([](C x, C y) { return x > y ? x : (y > x ? y : x + (y - y)); });
        break;
      case BinaryOp::Minimum:
        arith([](C x, C y) { return x < y ? x : (y < x ? y : x + (y - y)); });
        break;
      case BinaryOp::Eq:
        compare([](C x, C y) { return x == y; });
        break;
      case BinaryOp::Ne:
        compare([](C x, C y) { return x != y; });
        break;
      case BinaryOp::Lt:
        compare([](C x, C y) { return x < y; });
        break;
      case BinaryOp::Le:
        compare([](C x, C y) { return x <= y; });
        break;
      case BinaryOp::Gt:
        compare([](C x, C y) { return x > y; });
        break;
      case BinaryOp::Ge:
        compare([](C x, C y) { return x >= y; });
        break;
      case BinaryOp::LogicalAnd:
        compare([](C x, C y) { return x && y; });
        break;
      case BinaryOp::LogicalOr:
        compare([](C x, C y) { return x || y; });
        break;
    }
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "where", [&]<class T>() {
    map3<T, bool, T, T>(out, cond, a, b, [](bool c, T x, T y) { return c ? x : y; });
  });
}

void CpuBackend::gated(GatedAct act, const Tensor& gate, const Tensor& up, const Tensor& out) {
  dispatch_floating(gate.dtype(), "gated", [&]<class T>() {
    gated_forward<T>(to_act(act), gate.data<T>(), up.data<T>(), out.data<T>(), gate.numel());
  });
}

void CpuBackend::gated_backward(GatedAct act, const Tensor& gate, const Tensor& up,
                                const Tensor& dy, const Tensor& dgate, const Tensor& dup) {
  dispatch_floating(gate.dtype(), "gated_backward", [&]<class T>() {
    cpu::gated_backward<T>(to_act(act), gate.data<T>(), up.data<T>(), dy.data<T>(), dgate.data<T>(),
                           dup.data<T>(), gate.numel());
  });
}

}  // namespace strata::cpu
