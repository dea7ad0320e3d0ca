#pragma once
// The fused Adam-family update: one pass over (param, grad, m, v), every scalar folded in by the
// caller. AdamW (PyTorch) and AdamWScale (nanoT5) are both instances of
//
//   p = p * pre_decay
//   m = lerp_m ? fma(w1, g - m, m) : fma(g, w1, b1 * m)    (w1 = 1 - beta1)
//   v = b2 * v + (w2 * g) * g                               (w2 = 1 - beta2)
//   p = p + (neg_step * m) / (sqrt(v) / denom_div + eps)
//   p = fma(p, post_decay, p)
//
// with the operation order of the reference implementations (the two FMAs are where ATen's
// vectorised lerp and add-with-alpha fuse), so rounding follows them closely. The element-wise
// loop is parallel over fixed chunks and has no reduction, so its result does not depend on the
// thread count; the AVX2 and scalar paths give identical bits (explicit FMAs only: the library is
// built with -ffp-contract=off).
#include <cstdint>

#include "core/bf16.h"

namespace strata::optim::kernels {

template <class S>
struct AdamScalars {
  S pre_decay = 1;
  bool lerp_m = false;
  S b1 = 0, w1 = 0, b2 = 0, w2 = 0;
  S denom_div = 1;
  S eps = 0;
  S neg_step = 0;
  S post_decay = 0;  // 0 skips the second decay pass
};

// P is the parameter type (float, double, bf16); state and math are in S = compute type
// (float for float/bf16, double for double). G is the gradient type (P or S).
void adam_update(float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s);
void adam_update(double* p, const double* g, double* m, double* v, int64_t n,
                 const AdamScalars<double>& s);
void adam_update(bf16* p, const bf16* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s);
void adam_update(bf16* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s);

// Forced paths for tests (f32 only): identical results are expected.
void adam_update_scalar(float* p, const float* g, float* m, float* v, int64_t n,
                        const AdamScalars<float>& s);
bool adam_update_avx2_available();
void adam_update_avx2(float* p, const float* g, float* m, float* v, int64_t n,
                      const AdamScalars<float>& s);

// Sum of squares in f64, in a fixed order: blocks of kSumBlock elements, each summed over eight
// lanes combined in a fixed tree, blocks added in index order. Independent of the thread count.
inline constexpr int64_t kSumBlock = 4096;
double sum_squares(const float* x, int64_t n);
double sum_squares(const double* x, int64_t n);
double sum_squares(const bf16* x, int64_t n);
double sum_squares_scalar(const float* x, int64_t n);

// x *= c in place (gradient clipping).
void scale(float* x, int64_t n, float c);
void scale(double* x, int64_t n, double c);
void scale(bf16* x, int64_t n, float c);

}  // namespace strata::optim::kernels
