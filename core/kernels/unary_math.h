#pragma once
// The scalar values and derivatives of the unary ops and of the activations, written once for the
// CPU and the CUDA backends. Each backend passes its math primitives as M, in the compute type
// (the CPU: std:: through vec_math.h's scalar::; the GPU: the CUDA device functions), so both
// compute the same formulas with the same constants. The AVX2 lanes of the CPU activations
// (activation_kernels.cpp) follow the same formulas with the constants below.
//
// M provides, for the compute types C used (float, double):
//   exp, log, log1p, sqrt, tanh, erfc, pow, sin, cos, abs
#include <cstdint>

#include "core/backend.h"

#if defined(__CUDACC__)
#define STRATA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define STRATA_HOST_DEVICE inline
#endif

namespace strata::kernels {

inline constexpr double kInvSqrt2 = 0.70710678118654752440;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;
inline constexpr double kGeluCubic = 0.044715;

// The activations with fused kernels (forward, backward, gated).
enum class Act : uint8_t { GeluExact, GeluTanh, Silu };

// A value and a derivative (std::pair is not usable in device code).
template <class C>
struct Pair {
  C first, second;
};

// std::min / std::max as the C++ library defines them (min(a, b) = b < a ? b : a), so NaN
// propagates the same way on both backends.
template <class C>
STRATA_HOST_DEVICE C min_of(C a, C b) {
  return b < a ? b : a;
}
template <class C>
STRATA_HOST_DEVICE C max_of(C a, C b) {
  return a < b ? b : a;
}

template <class M, class C>
STRATA_HOST_DEVICE C sigmoid_of(C x) {
  return x >= C(0) ? C(1) / (C(1) + M::exp(-x)) : M::exp(x) / (C(1) + M::exp(x));
}

// The activation's value v and derivative d at x:
//   GeluExact  x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2
//   GeluTanh   0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as x s with
//              s = 1 / (1 + exp(-2u)) (the same function; one exp, no tanh)
//   Silu       x sigmoid(x)
template <class M, class A>
STRATA_HOST_DEVICE void act_vg(Act act, A x, A& v, A& d) {
  switch (act) {
    case Act::GeluExact: {
      const A cdf = A(0.5) * M::erfc(-x * A(kInvSqrt2));
      v = x * cdf;
      d = cdf + x * A(kInvSqrt2Pi) * M::exp(A(-0.5) * x * x);
      return;
    }
    case Act::GeluTanh: {
      const A x2 = x * x;
      const A u = A(kSqrt2OverPi) * x * (A(1) + A(kGeluCubic) * x2);
      const A s = A(1) / (A(1) + M::exp(A(-2) * u));
      v = x * s;
      const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * x2);
      d = s + x * s * (A(1) - s) * A(2) * du;
      return;
    }
    case Act::Silu: {
      const A s = A(1) / (A(1) + M::exp(-x));
      v = x * s;
      d = s * (A(1) + x * (A(1) - s));
      return;
    }
  }
  v = x;
  d = A(1);
}

STRATA_HOST_DEVICE bool fused_act(UnaryOp op, Act& act) {
  switch (op) {
    case UnaryOp::GeluExact:
      act = Act::GeluExact;
      return true;
    case UnaryOp::GeluTanh:
      act = Act::GeluTanh;
      return true;
    case UnaryOp::Silu:
      act = Act::Silu;
      return true;
    default:
      return false;
  }
}

// The value and derivative of an activation op (GeluExact, GeluTanh, Silu) at x.
template <class M, class C>
STRATA_HOST_DEVICE Pair<C> unary_act_vg(UnaryOp op, C x) {
  Act act = Act::Silu;
  fused_act(op, act);
  Pair<C> vd;
  act_vg<M>(act, x, vd.first, vd.second);
  return vd;
}

// f(x) for op with parameters (pa, pb) (Pow's exponent, Clamp's bounds, Affine's scale and shift).
template <class M, class C>
STRATA_HOST_DEVICE C unary_value(UnaryOp op, C x, double pa, double pb) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return M::exp(x);
    case UnaryOp::Log:
      return M::log(x);
    case UnaryOp::Sqrt:
      return M::sqrt(x);
    case UnaryOp::Rsqrt:
      return C(1) / M::sqrt(x);
    case UnaryOp::Tanh:
      return M::tanh(x);
    case UnaryOp::Sigmoid:
      return sigmoid_of<M>(x);
    case UnaryOp::Relu:
      return x > C(0) ? x : C(0);
    case UnaryOp::GeluExact:
    case UnaryOp::GeluTanh:
    case UnaryOp::Silu:
      return unary_act_vg<M>(op, x).first;
    case UnaryOp::Abs:
      return M::abs(x);
    case UnaryOp::LogSigmoid:  // min(x, 0) - log1p(exp(-|x|)), stable for both signs
      return min_of(x, C(0)) - M::log1p(M::exp(-M::abs(x)));
    case UnaryOp::Pow:
      return M::pow(x, C(pa));
    case UnaryOp::Clamp:
      return min_of(max_of(x, C(pa)), C(pb));
    case UnaryOp::Affine:
      return C(pa) * x + C(pb);
    case UnaryOp::Reciprocal:
      return C(1) / x;
    case UnaryOp::Sin:
      return M::sin(x);
    case UnaryOp::Cos:
      return M::cos(x);
    case UnaryOp::Square:
      return x * x;
  }
  return x;
}

// d f / d x, given the input x and the output y.
template <class M, class C>
STRATA_HOST_DEVICE C unary_derivative(UnaryOp op, C x, C y, double pa, double pb) {
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
    case UnaryOp::GeluTanh:
    case UnaryOp::Silu:
      return unary_act_vg<M>(op, x).second;
    case UnaryOp::Abs:
      return x > C(0) ? C(1) : (x < C(0) ? C(-1) : C(0));
    case UnaryOp::LogSigmoid:
      return C(1) - sigmoid_of<M>(x);
    case UnaryOp::Pow:
      return C(pa) * M::pow(x, C(pa - 1));
    case UnaryOp::Clamp:
      return x >= C(pa) && x <= C(pb) ? C(1) : C(0);
    case UnaryOp::Affine:
      return C(pa);
    case UnaryOp::Reciprocal:
      return -y * y;
    case UnaryOp::Sin:
      return M::cos(x);
    case UnaryOp::Cos:
      return -M::sin(x);
    case UnaryOp::Square:
      return C(2) * x;
  }
  return C(0);
}

}  // namespace strata::kernels
