// Reductions (sum, mean, max, min), argmax and cumsum. Sums accumulate in f64 (i64 for integers)
// in a fixed order, so results do not depend on the thread count.
#include <cmath>
#include <limits>
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu {

namespace {

// Offsets (in elements) of every multi-index over `sizes` with `strides`, in row-major order.
std::vector<int64_t> offsets_of(const std::vector<int64_t>& sizes,
                                const std::vector<int64_t>& strides) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  std::vector<int64_t> out(n);
  std::vector<int64_t> idx(sizes.size(), 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = off;
    for (int64_t d = int64_t(sizes.size()) - 1; d >= 0; --d) {
      if (++idx[d] < sizes[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (sizes[d] - 1);
      idx[d] = 0;
    }
  }
  return out;
}

template <class T>
using reduce_acc_t = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, std::span<const int64_t> dims,
                        const Tensor& out) {
  std::vector<int64_t> kept_sizes, kept_strides, red_sizes, red_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    (reduced ? red_sizes : kept_sizes).push_back(x.shape()[d]);
    (reduced ? red_strides : kept_strides).push_back(x.strides()[d]);
  }
  const std::vector<int64_t> kept_off = offsets_of(kept_sizes, kept_strides);
  const std::vector<int64_t> red_off = offsets_of(red_sizes, red_strides);
  const int64_t K = int64_t(kept_off.size()), R = int64_t(red_off.size());

  dispatch_all(x.dtype(), "reduce", [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      STRATA_FAIL("reduce: bool input must be converted first");
    } else {
      using A = reduce_acc_t<T>;
      using C = compute_t<T>;
      const T* xp = static_cast<const T*>(x.raw_data());
      T* op_out = out.data<T>();
      // Leading dims reduced over a contiguous tensor (bias gradients): stream rows, each thread
      // owning a slice of the outputs, so reads stay sequential and the order stays fixed.
      const bool leading =
          x.is_contiguous() && !dims.empty() && dims.back() == int64_t(dims.size()) - 1;
      if ((op == ReduceOp::Sum || op == ReduceOp::Mean) && leading && K > 1) {
        constexpr int64_t kSlice = 256;
        const int64_t slices = (K + kSlice - 1) / kSlice;
#pragma omp parallel for schedule(static) if (use_parallel(K * R))
        for (int64_t sl = 0; sl < slices; ++sl) {
          const int64_t k0 = sl * kSlice, k1 = std::min(K, k0 + kSlice);
          A acc[kSlice] = {};
          for (int64_t r = 0; r < R; ++r) {
            const T* row = xp + r * K;
            for (int64_t k = k0; k < k1; ++k) acc[k - k0] += A(C(row[k]));
          }
          for (int64_t k = k0; k < k1; ++k)
            op_out[k] = T(C(op == ReduceOp::Mean ? A(acc[k - k0] / A(R)) : acc[k - k0]));
        }
        return;
      }
#pragma omp parallel for schedule(static) if (use_parallel(K * R))
      for (int64_t k = 0; k < K; ++k) {
        const T* base = xp + kept_off[k];
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          A acc = 0;
          for (int64_t r = 0; r < R; ++r) acc += A(C(base[red_off[r]]));
          if (op == ReduceOp::Mean) acc = A(acc / A(R));
          op_out[k] = T(C(acc));
        } else {
          C best = R ? C(base[red_off[0]]) : C(0);
          for (int64_t r = 1; r < R; ++r) {
            const C v = C(base[red_off[r]]);
            if constexpr (std::is_floating_point_v<C>) {
              if (std::isnan(v) || std::isnan(best)) {
                best = std::numeric_limits<C>::quiet_NaN();
                continue;
              }
            }
            best = op == ReduceOp::Max ? std::max(best, v) : std::min(best, v);
          }
          op_out[k] = T(best);
        }
      }
    }
  });
}

void CpuBackend::argmax(const Tensor& x, int64_t dim, const Tensor& out) {
  std::vector<int64_t> kept_sizes, kept_strides;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim) {
      kept_sizes.push_back(x.shape()[d]);
      kept_strides.push_back(x.strides()[d]);
    }
  const auto kept_off = offsets_of(kept_sizes, kept_strides);
  const int64_t n = x.shape()[dim], st = x.strides()[dim];
  int64_t* o = out.data<int64_t>();
  dispatch_all(x.dtype(), "argmax", [&]<class T>() {
    using C = std::conditional_t<std::is_same_v<T, bool>, int, compute_t<T>>;
    const T* xp = static_cast<const T*>(x.raw_data());
    for (int64_t k = 0; k < int64_t(kept_off.size()); ++k) {
      const T* base = xp + kept_off[k];
      int64_t best = 0;
      C bv = C(base[0]);
      for (int64_t i = 1; i < n; ++i) {
        const C v = C(base[i * st]);
        if (v > bv) {
          bv = v;
          best = i;
        }
      }
      o[k] = best;
    }
  });
}

void CpuBackend::cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) {
  std::vector<int64_t> kept_sizes, x_strides, o_strides;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim) {
      kept_sizes.push_back(x.shape()[d]);
      x_strides.push_back(x.strides()[d]);
      o_strides.push_back(out.strides()[d]);
    }
  const auto x_off = offsets_of(kept_sizes, x_strides);
  const auto o_off = offsets_of(kept_sizes, o_strides);
  const int64_t n = x.dim() ? x.shape()[dim] : 1;
  const int64_t xs = x.dim() ? x.strides()[dim] : 1, os = x.dim() ? out.strides()[dim] : 1;
  dispatch_all(x.dtype(), "cumsum", [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      STRATA_FAIL("cumsum: bool input must be converted first");
    } else {
      using A = reduce_acc_t<T>;
      using C = compute_t<T>;
      const T* xp = static_cast<const T*>(x.raw_data());
      T* op = out.data<T>();
#pragma omp parallel for schedule(static) if (use_parallel(int64_t(x_off.size()) * n))
      for (int64_t k = 0; k < int64_t(x_off.size()); ++k) {
        A acc = 0;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t i = reverse ? n - 1 - j : j;
          acc += A(C(xp[x_off[k] + i * xs]));
          op[o_off[k] + i * os] = T(C(acc));
        }
      }
    }
  });
}

}  // namespace strata::cpu
