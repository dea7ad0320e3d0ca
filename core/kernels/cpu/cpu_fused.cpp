// Tensor-level wrappers of the fused row kernels (softmax, norms, cross-entropy), rotary
// embedding and attention. The raw kernels are in *_kernels.{h,cpp} beside this file.
#include <cmath>

#include "core/kernels/cpu/attention_kernels.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/cross_entropy_kernels.h"
#include "core/kernels/cpu/norm_kernels.h"
#include "core/kernels/cpu/softmax_kernels.h"

namespace strata::cpu {

namespace {

int64_t rows_of(const Tensor& t) {
  return t.dim() ? t.numel() / t.size(-1) : 1;
}
int64_t cols_of(const Tensor& t) {
  return t.dim() ? t.size(-1) : 1;
}

template <class P>
P* opt_data(const Tensor& t) {
  return t.defined() ? t.data<P>() : nullptr;
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& y, bool log) {
  dispatch_floating(x.dtype(), "softmax", [&]<class T>() {
    softmax_forward<T>(x.data<T>(), y.data<T>(), rows_of(x), cols_of(x), log);
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) {
  dispatch_floating(y.dtype(), "softmax_backward", [&]<class T>() {
    cpu::softmax_backward<T>(y.data<T>(), dy.data<T>(), dx.data<T>(), rows_of(y), cols_of(y), log);
  });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                            const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  dispatch_floating(x.dtype(), "layer_norm", [&]<class T>() {
    using A = acc_t<T>;
    layer_norm_forward<T>(x.data<T>(), opt_data<T>(w), opt_data<T>(b), y.data<T>(), mean.data<A>(),
                          rstd.data<A>(), rows_of(x), cols_of(x), eps);
  });
}

void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                                     const Tensor& dw, const Tensor& db) {
  dispatch_floating(x.dtype(), "layer_norm_backward", [&]<class T>() {
    using A = acc_t<T>;
    cpu::layer_norm_backward<T>(x.data<T>(), opt_data<T>(w), mean.data<A>(), rstd.data<A>(),
                                dy.data<T>(), opt_data<T>(dx), opt_data<T>(dw), opt_data<T>(db),
                                rows_of(x), cols_of(x));
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                          const Tensor& rstd) {
  dispatch_floating(x.dtype(), "rms_norm", [&]<class T>() {
    using A = acc_t<T>;
    rms_norm_forward<T>(x.data<T>(), opt_data<T>(w), y.data<T>(), rstd.data<A>(), rows_of(x),
                        cols_of(x), eps);
  });
}

void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd,
                                   const Tensor& dy, const Tensor& dx, const Tensor& dw) {
  dispatch_floating(x.dtype(), "rms_norm_backward", [&]<class T>() {
    using A = acc_t<T>;
    cpu::rms_norm_backward<T>(x.data<T>(), opt_data<T>(w), rstd.data<A>(), dy.data<T>(),
                              opt_data<T>(dx), opt_data<T>(dw), rows_of(x), cols_of(x));
  });
}

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                               double smoothing, const Tensor& loss, const Tensor& lse) {
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<class T>() {
    using A = acc_t<T>;
    cross_entropy_forward<T>(logits.data<T>(), target.data<int64_t>(), rows_of(logits),
                             cols_of(logits), ignore_index, smoothing, loss.data<A>(),
                             lse.data<A>());
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target,
                                        const Tensor& lse, const Tensor& dloss,
                                        int64_t ignore_index, double smoothing,
                                        const Tensor& dlogits) {
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    using A = acc_t<T>;
    STRATA_CHECK(dloss.dtype() == dtype_of<A>(), "cross_entropy_backward: loss gradient is ",
                 dtype_name(dloss.dtype()));
    cpu::cross_entropy_backward<T>(logits.data<T>(), target.data<int64_t>(), lse.data<A>(),
                                   dloss.data<A>(), rows_of(logits), cols_of(logits), ignore_index,
                                   smoothing, dlogits.data<T>());
  });
}

void CpuBackend::rope(const Tensor& x, double base, int64_t pos_offset, bool inverse,
                      const Tensor& y) {
  const int64_t D = x.size(-1), L = x.size(-2), half = D / 2;
  const int64_t lines = x.numel() / D;
  // Angles in f64 once per (position, frequency): positions reach 10^5 and f32 angles lose
  // the low bits that distinguish neighbouring tokens.
  std::vector<double> cosv(size_t(L * half)), sinv(size_t(L * half));
  for (int64_t l = 0; l < L; ++l)
    for (int64_t i = 0; i < half; ++i) {
      const double theta = double(pos_offset + l) * std::pow(base, -2.0 * double(i) / double(D));
      cosv[l * half + i] = std::cos(theta);
      sinv[l * half + i] = inverse ? -std::sin(theta) : std::sin(theta);
    }
  dispatch_floating(x.dtype(), "rope", [&]<class T>() {
    using C = compute_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static) if (use_parallel(x.numel()))
    for (int64_t r = 0; r < lines; ++r) {
      const int64_t l = r % L;
      const T* xr = xp + r * D;
      T* yr = yp + r * D;
      for (int64_t i = 0; i < half; ++i) {
        const C c = C(cosv[l * half + i]), s = C(sinv[l * half + i]);
        const C x1 = C(xr[i]), x2 = C(xr[i + half]);
        yr[i] = T(x1 * c - x2 * s);
        yr[i + half] = T(x2 * c + x1 * s);
      }
    }
  });
}

namespace {

template <class T>
AttentionArgs<T> attention_args(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& bias, const Tensor& key_mask, AttentionParams p) {
  AttentionArgs<T> a;
  a.batch = q.size(0);
  a.heads = q.size(1);
  a.q_len = q.size(2);
  a.kv_len = k.size(2);
  a.head_dim = q.size(3);
  a.q = q.data<T>();
  a.q_stride = {q.stride(0), q.stride(1), q.stride(2)};
  a.k = k.data<T>();
  a.k_stride = {k.stride(0), k.stride(1), k.stride(2)};
  a.v = v.data<T>();
  a.v_stride = {v.stride(0), v.stride(1), v.stride(2)};
  a.scale = p.scale;
  a.causal = p.causal;
  if (bias.defined()) {
    a.bias = bias.data<T>();
    a.bias_stride = {bias.stride(0), bias.stride(1), bias.stride(2), bias.stride(3)};
  }
  if (key_mask.defined()) {
    a.key_mask = reinterpret_cast<const uint8_t*>(key_mask.data<bool>());
    a.key_mask_stride = key_mask.stride(0);
  }
  return a;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                           const Tensor& key_mask, AttentionParams p, const Tensor& out,
                           const Tensor& lse) {
  dispatch_floating(q.dtype(), "attention", [&]<class T>() {
    if constexpr (std::is_same_v<T, bf16>) {
      STRATA_FAIL("attention: bf16 is not supported on the CPU");
    } else {
      attention_forward<T>(attention_args<T>(q, k, v, bias, key_mask, p), out.data<T>(),
                           lse.data<acc_t<T>>());
    }
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& bias, const Tensor& key_mask, AttentionParams p,
                                    const Tensor& out, const Tensor& lse, const Tensor& dout,
                                    const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                    const Tensor& dbias) {
  dispatch_floating(q.dtype(), "attention_backward", [&]<class T>() {
    if constexpr (std::is_same_v<T, bf16>) {
      STRATA_FAIL("attention: bf16 is not supported on the CPU");
    } else {
      cpu::attention_backward<T>(attention_args<T>(q, k, v, bias, key_mask, p), out.data<T>(),
                                 lse.data<acc_t<T>>(), dout.data<T>(), dq.data<T>(), dk.data<T>(),
                                 dv.data<T>(), opt_data<T>(dbias));
    }
  });
}

}  // namespace strata::cpu
