// index_select / index_add along a dim, gather / scatter_add, with bounds checks that name the
// offending index. Writes that may collide (index_add, scatter_add) run serially over the
// colliding dim, so sums are deterministic.
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu {

namespace {

void check_bounds(const Tensor& index, int64_t size, const char* op) {
  const int64_t* ip = index.data<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i)
    STRATA_CHECK(ip[i] >= 0 && ip[i] < size, op, ": index ", ip[i], " at position ", i,
                 " is out of range for a dim of size ", size, " (valid: 0..", size - 1, ")");
}

// Splits a tensor around `dim` into (outer, dim, inner) with the contiguous layout assumed.
struct Around {
  int64_t outer = 1, inner = 1;
};
Around around(const Shape& s, int64_t dim) {
  Around a;
  for (int64_t d = 0; d < dim; ++d) a.outer *= s[d];
  for (int64_t d = dim + 1; d < int64_t(s.size()); ++d) a.inner *= s[d];
  return a;
}

}  // namespace

void CpuBackend::index_select(const Tensor& x_in, int64_t dim, const Tensor& index,
                              const Tensor& out) {
  check_bounds(index, x_in.shape()[dim], "index_select");
  const Tensor x = x_in.contiguous();
  const Around a = around(x.shape(), dim);
  const int64_t n = x.shape()[dim], m = index.numel();
  const int64_t* ip = index.data<int64_t>();
  const size_t es = x.element_size();
  const char* xp = static_cast<const char*>(x.raw_data());
  char* op = static_cast<char*>(out.raw_data());
  const size_t row = size_t(a.inner) * es;
#pragma omp parallel for collapse(2) schedule(static) if (use_parallel(a.outer * m * a.inner))
  for (int64_t o = 0; o < a.outer; ++o)
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(op + (o * m + j) * row, xp + (o * n + ip[j]) * row, row);
}

void CpuBackend::index_add(const Tensor& out, int64_t dim, const Tensor& index,
                           const Tensor& src_in) {
  check_bounds(index, out.shape()[dim], "index_add");
  const Tensor src = src_in.contiguous();
  const Around a = around(out.shape(), dim);
  const int64_t n = out.shape()[dim], m = index.numel();
  const int64_t* ip = index.data<int64_t>();
  dispatch_floating(out.dtype(), "index_add", [&]<class T>() {
    using C = compute_t<T>;
    T* op = out.data<T>();
    const T* sp = src.data<T>();
    // Parallel over the inner (feature) dim: rows that repeat an index add in index order.
    constexpr int64_t kSlice = 64;
    const int64_t slices = (a.inner + kSlice - 1) / kSlice;
#pragma omp parallel for collapse(2) schedule(static) if (use_parallel(a.outer * m * a.inner))
    for (int64_t o = 0; o < a.outer; ++o)
      for (int64_t sl = 0; sl < slices; ++sl) {
        const int64_t c0 = sl * kSlice, c1 = std::min(a.inner, c0 + kSlice);
        for (int64_t j = 0; j < m; ++j) {
          T* dst = op + (o * n + ip[j]) * a.inner;
          const T* s = sp + (o * m + j) * a.inner;
          for (int64_t c = c0; c < c1; ++c) dst[c] = T(C(dst[c]) + C(s[c]));
        }
      }
  });
}

void CpuBackend::gather(const Tensor& x_in, int64_t dim, const Tensor& index, const Tensor& out) {
  check_bounds(index, x_in.shape()[dim], "gather");
  const Tensor x = x_in.contiguous();
  const Shape& is = index.shape();
  const Shape xstr = x.strides();
  const int64_t total = index.numel();
  const int64_t* ip = index.data<int64_t>();
  dispatch_all(x.dtype(), "gather", [&]<class T>() {
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    for (int64_t i = 0; i < total; ++i) {
      int64_t rem = i, off = 0;
      for (int64_t d = int64_t(is.size()) - 1; d >= 0; --d) {
        const int64_t c = rem % is[d];
        rem /= is[d];
        off += (d == dim ? ip[i] : c) * xstr[d];
      }
      op[i] = xp[off];
    }
  });
}

void CpuBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& index,
                             const Tensor& src) {
  check_bounds(index, out.shape()[dim], "scatter_add");
  STRATA_CHECK(out.is_contiguous(), "scatter_add: destination must be contiguous");
  const Shape& is = index.shape();
  const Shape ostr = out.strides();
  const int64_t total = index.numel();
  const int64_t* ip = index.data<int64_t>();
  dispatch_floating(out.dtype(), "scatter_add", [&]<class T>() {
    using C = compute_t<T>;
    T* op = out.data<T>();
    const T* sp = src.data<T>();
    for (int64_t i = 0; i < total; ++i) {
      int64_t rem = i, off = 0;
      for (int64_t d = int64_t(is.size()) - 1; d >= 0; --d) {
        const int64_t c = rem % is[d];
        rem /= is[d];
        off += (d == dim ? ip[i] : c) * ostr[d];
      }
      op[off] = T(C(op[off]) + C(sp[i]));
    }
  });
}

}  // namespace strata::cpu
