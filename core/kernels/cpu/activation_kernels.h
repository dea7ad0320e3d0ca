#pragma once
// Element-wise activations over a flat contiguous array of n elements, their derivatives, and the
// gated forms y = act(gate) * up used by T5's gated-GELU and Llama's SwiGLU feed-forward blocks.
//
//   GeluExact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), computed as 0.5 x erfc(-x / sqrt 2) so
//              the negative tail keeps its relative accuracy.
//   GeluTanh:  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (HF "gelu_new"), computed through
//              the identity 0.5 (1 + tanh(u)) = sigmoid(2u), which does not cancel for x < 0.
//   Silu:      x * sigmoid(x).
// Internal arithmetic is in acc_t<T>. Outputs may alias inputs element-for-element.
#include <cstdint>

#include "core/kernels/cpu/kernel_types.h"
#include "core/kernels/unary_math.h"

namespace strata::cpu {

using kernels::Act;  // the formulas: core/kernels/unary_math.h

template <class T>
void activation_forward(Act act, const T* x, T* y, int64_t n);
// dx = dy * act'(x).
template <class T>
void activation_backward(Act act, const T* x, const T* dy, T* dx, int64_t n);

template <class T>
void gelu_forward(const T* x, T* y, int64_t n, bool tanh_approx);
template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx);
template <class T>
void silu_forward(const T* x, T* y, int64_t n);
template <class T>
void silu_backward(const T* x, const T* dy, T* dx, int64_t n);

// y = act(gate) * up.
template <class T>
void gated_forward(Act act, const T* gate, const T* up, T* y, int64_t n);
// dgate = dy * up * act'(gate), dup = dy * act(gate). Either output may be null to skip it.
template <class T>
void gated_backward(Act act, const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n);

}  // namespace strata::cpu
