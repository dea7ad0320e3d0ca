// copy (with dtype conversion), fill, and the counter-based random fills.
#include <cmath>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/strided_loop.h"
#include "core/random/philox.h"

namespace strata::cpu {

namespace {

template <class To, class From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return compute_t<From>(v) != compute_t<From>(0);
  } else if constexpr (std::is_same_v<To, bf16>) {
    return bf16(float(v));
  } else if constexpr (std::is_same_v<From, bf16>) {
    return To(float(v));
  } else {
    return To(v);
  }
}

// Applies f(i) -> value for every element in logical order; i is the element's linear index.
template <class T, class F>
void fill_indexed(const Tensor& dst, F&& f) {
  STRATA_CHECK(dst.is_contiguous(), "random fill: destination must be contiguous");
  T* p = dst.data<T>();
  const int64_t n = dst.numel();
#pragma omp parallel for schedule(static) if (use_parallel(n))
  for (int64_t i = 0; i < n; ++i) p[i] = f(i);
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  STRATA_CHECK(src.shape() == dst.shape(), "copy: source ", shape_str(src.shape()),
               " and destination ", shape_str(dst.shape()), " differ");
  STRATA_CHECK(src.device().is_cpu() && dst.device().is_cpu(),
               "copy: the CPU backend copies between CPU tensors only");
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), size_t(src.numel()) * src.element_size());
    return;
  }
  dispatch_all(dst.dtype(), "copy", [&]<class To>() {
    dispatch_all(src.dtype(), "copy", [&]<class From>() {
      map1<To, From>(dst, src, [](From v) { return convert<To, From>(v); });
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), "fill", [&]<class T>() {
    T v;
    if constexpr (std::is_same_v<T, bf16>)
      v = bf16(float(value));
    else
      v = T(value);
    // A zero-stride source broadcast over dst.
    const auto L = make_layout<1>(dst.shape(), {&dst});
    for_each_run<1>(
        L, base_pointers<1>({&dst}),
        [&](const std::array<char*, 1>& p, int64_t len, const std::array<int64_t, 1>& st) {
          for (int64_t i = 0; i < len; ++i) *reinterpret_cast<T*>(p[0] + i * st[0]) = v;
        });
  });
}

void CpuBackend::uniform(const Tensor& dst, RandomKey key, double lo, double hi) {
  const Philox rng(key.seed, key.stream, key.step);
  dispatch_floating(dst.dtype(), "uniform", [&]<class T>() {
    fill_indexed<T>(dst, [&](int64_t i) {
      const uint64_t g = key.index_offset + uint64_t(i);
      const double u = std::is_same_v<T, double> ? rng.uniform_f64(g) : double(rng.uniform(g));
      return T(compute_t<T>(lo + (hi - lo) * u));
    });
  });
}

void CpuBackend::normal(const Tensor& dst, RandomKey key, double mean, double std) {
  const Philox rng(key.seed, key.stream, key.step);
  dispatch_floating(dst.dtype(), "normal", [&]<class T>() {
    fill_indexed<T>(dst, [&](int64_t i) {
      return T(compute_t<T>(mean + std * rng.normal(key.index_offset + uint64_t(i))));
    });
  });
}

void CpuBackend::dropout(const Tensor& x, double p, RandomKey key, const Tensor& y) {
  const Philox rng(key.seed, key.stream, key.step);
  const float threshold = float(p);
  const bool strided = key.row_first != 0 || key.row_stride != 1;
  STRATA_CHECK(!strided || (x.dim() >= 1 && key.row_first >= 0 && key.row_stride >= 1),
               "dropout: a row mapping (first ", key.row_first, ", stride ", key.row_stride,
               ") needs a tensor with a leading row dimension, first >= 0 and stride >= 1");
  dispatch_floating(x.dtype(), "dropout", [&]<class T>() {
    using C = compute_t<T>;
    const C scale = C(1.0 / (1.0 - p));
    const T* xp = x.data<T>();
    const int64_t row_elems = strided && x.numel() > 0 ? x.numel() / x.size(0) : 1;
    auto global = [&](int64_t i) -> uint64_t {
      if (!strided) return uint64_t(i);
      const int64_t row = i / row_elems;
      return uint64_t((row * key.row_stride + key.row_first) * row_elems + (i - row * row_elems));
    };
    fill_indexed<T>(y, [&](int64_t i) {
      const bool keep = rng.uniform(key.index_offset + global(i)) >= threshold;
      return T(keep ? C(xp[i]) * scale : C(0));
    });
  });
}

}  // namespace strata::cpu
