// Element-wise unary/binary/where kernels and their derivatives, over any strides and dtypes.
#include <cmath>

#include "core/kernels/cpu/activation_kernels.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/strided_loop.h"

namespace strata::cpu {

namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;

template <class C>
C sigmoid_of(C x) {
  return x >= 0 ? C(1) / (C(1) + std::exp(-x)) : std::exp(x) / (C(1) + std::exp(x));
}

template <class C>
C unary_value(UnaryOp op, C x, UnaryParams p) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return std::exp(x);
    case UnaryOp::Log:
      return std::log(x);
    case UnaryOp::Sqrt:
      return std::sqrt(x);
    case UnaryOp::Rsqrt:
      return C(1) / std::sqrt(x);
    case UnaryOp::Tanh:
      return std::tanh(x);
    case UnaryOp::Sigmoid:
      return sigmoid_of(x);
    case UnaryOp::Relu:
      return x > C(0) ? x : C(0);
    case UnaryOp::GeluExact:
      return C(0.5) * x * (C(1) + std::erf(x * C(kInvSqrt2)));
    case UnaryOp::GeluTanh:
      return C(0.5) * x * (C(1) + std::tanh(C(kSqrt2OverPi) * (x + C(0.044715) * x * x * x)));
    case UnaryOp::Silu:
      return x * sigmoid_of(x);
    case UnaryOp::Abs:
      return std::abs(x);
    case UnaryOp::LogSigmoid:  // min(x, 0) - log1p(exp(-|x|)), stable for both signs
      return std::min(x, C(0)) - std::log1p(std::exp(-std::abs(x)));
    case UnaryOp::Pow:
      return std::pow(x, C(p.a));
    case UnaryOp::Clamp:
      return std::min(std::max(x, C(p.a)), C(p.b));
    case UnaryOp::Affine:
      return C(p.a) * x + C(p.b);
    case UnaryOp::Reciprocal:
      return C(1) / x;
    case UnaryOp::Sin:
      return std::sin(x);
    case UnaryOp::Cos:
      return std::cos(x);
    case UnaryOp::Square:
      return x * x;
  }
  return x;
}

// d f / d x, given the input x and the output y.
template <class C>
C unary_derivative(UnaryOp op, C x, C y, UnaryParams p) {
  switch (op) {
    case UnaryOp::Neg:
      return C(-1);
    case UnaryOp::Exp:
      return y;
    case UnaryOp::Log:
      return C(1) / x;
    case UnaryOp::Sqrt:
      return C(0.5) / y;
    case UnaryOp::Rsqrt:
      return C(-0.5) * y * y * y;
    case UnaryOp::Tanh:
      return C(1) - y * y;
    case UnaryOp::Sigmoid:
      return y * (C(1) - y);
    case UnaryOp::Relu:
      return x > C(0) ? C(1) : C(0);
    case UnaryOp::GeluExact:
      return C(0.5) * (C(1) + std::erf(x * C(kInvSqrt2))) +
             x * C(kInvSqrt2Pi) * std::exp(C(-0.5) * x * x);
    case UnaryOp::GeluTanh: {
      const C inner = C(kSqrt2OverPi) * (x + C(0.044715) * x * x * x);
      const C t = std::tanh(inner);
      return C(0.5) * (C(1) + t) +
             C(0.5) * x * (C(1) - t * t) * C(kSqrt2OverPi) * (C(1) + C(3 * 0.044715) * x * x);
    }
    case UnaryOp::Silu: {
      const C s = sigmoid_of(x);
      return s * (C(1) + x * (C(1) - s));
    }
    case UnaryOp::Abs:
      return x > C(0) ? C(1) : (x < C(0) ? C(-1) : C(0));
    case UnaryOp::LogSigmoid:
      return C(1) - sigmoid_of(x);
    case UnaryOp::Pow:
      return C(p.a) * std::pow(x, C(p.a - 1));
    case UnaryOp::Clamp:
      return x >= C(p.a) && x <= C(p.b) ? C(1) : C(0);
    case UnaryOp::Affine:
      return C(p.a);
    case UnaryOp::Reciprocal:
      return -y * y;
    case UnaryOp::Sin:
      return std::cos(x);
    case UnaryOp::Cos:
      return -std::sin(x);
    case UnaryOp::Square:
      return C(2) * x;
  }
  return C(0);
}

std::optional<Act> fused_act(UnaryOp op) {
  switch (op) {
    case UnaryOp::GeluExact:
      return Act::GeluExact;
    case UnaryOp::GeluTanh:
      return Act::GeluTanh;
    case UnaryOp::Silu:
      return Act::Silu;
    default:
      return std::nullopt;
  }
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
      map1<T, T>(out, x, [op, p](T v) { return T(C(unary_value<C>(op, C(v), p))); });
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
      return T(C(g) * unary_derivative<C>(op, C(xv), C(yv), p));
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
