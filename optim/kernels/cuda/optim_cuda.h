#pragma once
// The optimizer's CUDA kernels: the fused Adam-family update (the formula of adam_kernel.h, each
// step rounded as there, so a CUDA update gives the CPU kernel's bits) and the pieces of
// global-norm clipping. A plain C++ header: optim's .cpp files call these with pointers into
// device memory under STRATA_HAS_CUDA; the definitions (adam_update.cu, grad_norm.cu) exist only
// in a CUDA build. Everything runs on cuda::stream(device), asynchronously.
#include <cstdint>

#include "core/bf16.h"
#include "optim/kernels/adam_kernel.h"

namespace strata::optim::kernels::cuda {

void adam_update(int device, float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s);
void adam_update(int device, double* p, const double* g, double* m, double* v, int64_t n,
                 const AdamScalars<double>& s);
void adam_update(int device, bf16* p, const bf16* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s);
void adam_update(int device, bf16* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s);

// Lion's and Sophia-G's element-wise updates (sign_update.cu), the loops of optim/lion.cpp and
// optim/sophia.cpp with the same rounding. Lion reads decay (when decays), b1, w1, b2, w2,
// neg_lr; Sophia decay, b1, w1, rho_b (rho * B), tiny (1e-15), neg_lr.
template <class S>
struct SignScalars {
  S decay = 1;
  bool decays = false;
  S b1 = 0, w1 = 0, b2 = 0, w2 = 0;
  S rho_b = 0, tiny = 0;
  S neg_lr = 0;
};
void lion_update(int device, float* p, const float* g, float* m, int64_t n,
                 const SignScalars<float>& s);
void lion_update(int device, double* p, const double* g, double* m, int64_t n,
                 const SignScalars<double>& s);
void lion_update(int device, bf16* p, const bf16* g, float* m, int64_t n,
                 const SignScalars<float>& s);
void lion_update(int device, bf16* p, const float* g, float* m, int64_t n,
                 const SignScalars<float>& s);
void sophia_update(int device, float* p, const float* g, float* m, const float* h, int64_t n,
                   const SignScalars<float>& s);
void sophia_update(int device, double* p, const double* g, double* m, const double* h, int64_t n,
                   const SignScalars<double>& s);
void sophia_update(int device, bf16* p, const bf16* g, float* m, const float* h, int64_t n,
                   const SignScalars<float>& s);
void sophia_update(int device, bf16* p, const float* g, float* m, const float* h, int64_t n,
                   const SignScalars<float>& s);
// h = b2 * h + (w2 * g) * g.
void sophia_hessian(int device, float* h, const float* g, int64_t n, float b2, float w2);
void sophia_hessian(int device, double* h, const double* g, int64_t n, double b2, double w2);
void sophia_hessian(int device, float* h, const bf16* g, int64_t n, float b2, float w2);

// Deterministic sums of squares without atomics: a fixed grid of kSumParts blocks writes one f64
// partial each (a block without elements writes 0), and sum_parts adds any number of partials in
// one fixed tree. The result depends on n only, never on timing.
inline constexpr int64_t kSumParts = 256;
void sum_squares_parts(int device, const float* x, int64_t n, double* parts);
void sum_squares_parts(int device, const double* x, int64_t n, double* parts);
void sum_squares_parts(int device, const bf16* x, int64_t n, double* parts);
// out[0] = parts[0] + ... + parts[count - 1] (count >= 0).
void sum_parts(int device, const double* parts, int64_t count, double* out);

// From the gradients' total sum of squares: norm[0] = sqrt(sum_sq[0]) and coef[0] = the factor
// clip_grad_norm applies, max_norm / (norm + 1e-6) when that is below 1 and the norm is finite,
// else exactly 1 (max_norm <= 0: always 1).
void clip_coefficient(int device, const double* sum_sq, double max_norm, double* norm,
                      double* coef);
// x *= coef[0] in x's precision (f32 and bf16 multiply by float(coef), as the CPU kernel); x is
// not written when coef[0] == 1.
void scale_by(int device, float* x, int64_t n, const double* coef);
void scale_by(int device, double* x, int64_t n, const double* coef);
void scale_by(int device, bf16* x, int64_t n, const double* coef);

}  // namespace strata::optim::kernels::cuda
