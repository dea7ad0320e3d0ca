#pragma once
// The engine under every element-wise CPU kernel: walks N operands that share a logical shape
// but have their own (byte) strides, including 0 strides for broadcast inputs. Dims that are
// contiguous across all operands are merged so the innermost run is as long as possible, and the
// work is split into fixed chunks over threads (chunk boundaries do not depend on the thread count,
// and no element is written by two threads).
#include <omp.h>

#include <array>
#include <cstdint>

#include "core/kernels/cpu/kernel_types.h"
#include "core/tensor.h"

namespace strata::cpu {

inline constexpr int kMaxDims = 12;

template <size_t N>
struct StridedLayout {
  int ndim = 0;  // after merging; the last dim is the innermost run
  std::array<int64_t, kMaxDims> shape{};
  std::array<std::array<int64_t, kMaxDims>, N> strides{};  // bytes
  int64_t numel = 1;
};

template <size_t N>
StridedLayout<N> make_layout(const Shape& shape, const std::array<const Tensor*, N>& ts) {
  StridedLayout<N> L;
  STRATA_CHECK(int(shape.size()) <= kMaxDims, "element-wise kernel: rank ", shape.size(),
               " exceeds the supported ", kMaxDims);
  for (int64_t s : shape) L.numel *= s;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    const int i = L.ndim++;
    L.shape[i] = shape[d];
    for (int k = 0; k < int(N); ++k)
      L.strides[k][i] = ts[k]->strides()[d] * int64_t(ts[k]->element_size());
  }
  // Merge dim i-1 into dim i when every operand steps through both as one run.
  int w = 0;
  for (int i = 0; i < L.ndim; ++i) {
    if (w > 0) {
      bool mergeable = true;
      for (int k = 0; k < int(N); ++k)
        mergeable &= L.strides[k][w - 1] == L.strides[k][i] * L.shape[i];
      if (mergeable) {
        L.shape[w - 1] *= L.shape[i];
        for (int k = 0; k < int(N); ++k) L.strides[k][w - 1] = L.strides[k][i];
        continue;
      }
    }
    L.shape[w] = L.shape[i];
    for (int k = 0; k < int(N); ++k) L.strides[k][w] = L.strides[k][i];
    ++w;
  }
  L.ndim = w;
  if (L.ndim == 0) {  // a scalar: one run of length 1
    L.ndim = 1;
    L.shape[0] = 1;
    for (int k = 0; k < int(N); ++k) L.strides[k][0] = 0;
  }
  return L;
}

// Calls run(ptrs, len, inner_strides) for consecutive runs of the innermost dim covering
// [begin, end) of the linear element order.
template <size_t N, class Run>
void for_each_run_range(const StridedLayout<N>& L, const std::array<char*, N>& base, int64_t begin,
                        int64_t end, Run&& run) {
  const int nd = L.ndim;
  std::array<int64_t, kMaxDims> idx{};
  int64_t rem = begin;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % L.shape[d];
    rem /= L.shape[d];
  }
  std::array<int64_t, N> inner;
  for (int k = 0; k < int(N); ++k) inner[k] = L.strides[k][nd - 1];
  int64_t pos = begin;
  while (pos < end) {
    const int64_t len = std::min(L.shape[nd - 1] - idx[nd - 1], end - pos);
    std::array<char*, N> p;
    for (int k = 0; k < int(N); ++k) {
      int64_t off = 0;
      for (int d = 0; d < nd; ++d) off += idx[d] * L.strides[k][d];
      p[k] = base[k] + off;
    }
    run(p, len, inner);
    pos += len;
    idx[nd - 1] += len;
    for (int d = nd - 1; d > 0 && idx[d] >= L.shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
}

template <size_t N, class Run>
void for_each_run(const StridedLayout<N>& L, const std::array<char*, N>& base, Run&& run) {
  const int64_t total = L.numel;
  if (total == 0) return;
  constexpr int64_t kChunk = 1 << 14;
  if (!use_parallel(total)) {
    for_each_run_range(L, base, 0, total, run);
    return;
  }
  const int64_t chunks = (total + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c)
    for_each_run_range(L, base, c * kChunk, std::min(total, (c + 1) * kChunk), run);
}

template <size_t N>
std::array<char*, N> base_pointers(const std::array<const Tensor*, N>& ts) {
  std::array<char*, N> p;
  for (int k = 0; k < int(N); ++k) p[k] = static_cast<char*>(ts[k]->raw_data());
  return p;
}

// out[i] = f(a[i]) over any strides; contiguous runs get a plain loop the compiler vectorises.
template <class Out, class A, class F>
void map1(const Tensor& out, const Tensor& a, F&& f) {
  const auto L = make_layout<2>(out.shape(), {&out, &a});
  for_each_run<2>(
      L, base_pointers<2>({&out, &a}),
      [&](const std::array<char*, 2>& p, int64_t len, const std::array<int64_t, 2>& st) {
        Out* o = reinterpret_cast<Out*>(p[0]);
        const A* x = reinterpret_cast<const A*>(p[1]);
        if (st[0] == sizeof(Out) && st[1] == sizeof(A)) {
          for (int64_t i = 0; i < len; ++i) o[i] = f(x[i]);
        } else {
          for (int64_t i = 0; i < len; ++i)
            *reinterpret_cast<Out*>(p[0] + i * st[0]) =
                f(*reinterpret_cast<const A*>(p[1] + i * st[1]));
        }
      });
}

// out[i] = f(a[i], b[i]); the broadcast-scalar case (stride 0) keeps a vectorisable loop.
template <class Out, class A, class B, class F>
void map2(const Tensor& out, const Tensor& a, const Tensor& b, F&& f) {
  const auto L = make_layout<3>(out.shape(), {&out, &a, &b});
  for_each_run<3>(
      L, base_pointers<3>({&out, &a, &b}),
      [&](const std::array<char*, 3>& p, int64_t len, const std::array<int64_t, 3>& st) {
        Out* o = reinterpret_cast<Out*>(p[0]);
        const A* x = reinterpret_cast<const A*>(p[1]);
        const B* y = reinterpret_cast<const B*>(p[2]);
        if (st[0] == sizeof(Out) && st[1] == sizeof(A) && st[2] == sizeof(B)) {
          for (int64_t i = 0; i < len; ++i) o[i] = f(x[i], y[i]);
        } else if (st[0] == sizeof(Out) && st[1] == sizeof(A) && st[2] == 0) {
          const B yv = *y;
          for (int64_t i = 0; i < len; ++i) o[i] = f(x[i], yv);
        } else if (st[0] == sizeof(Out) && st[1] == 0 && st[2] == sizeof(B)) {
          const A xv = *x;
          for (int64_t i = 0; i < len; ++i) o[i] = f(xv, y[i]);
        } else {
          for (int64_t i = 0; i < len; ++i)
            *reinterpret_cast<Out*>(p[0] + i * st[0]) =
                f(*reinterpret_cast<const A*>(p[1] + i * st[1]),
                  *reinterpret_cast<const B*>(p[2] + i * st[2]));
        }
      });
}

// out[i] = f(a[i], b[i], c[i]).
template <class Out, class A, class B, class C, class F>
void map3(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& c, F&& f) {
  const auto L = make_layout<4>(out.shape(), {&out, &a, &b, &c});
  for_each_run<4>(
      L, base_pointers<4>({&out, &a, &b, &c}),
      [&](const std::array<char*, 4>& p, int64_t len, const std::array<int64_t, 4>& st) {
        for (int64_t i = 0; i < len; ++i)
          *reinterpret_cast<Out*>(p[0] + i * st[0]) =
              f(*reinterpret_cast<const A*>(p[1] + i * st[1]),
                *reinterpret_cast<const B*>(p[2] + i * st[2]),
                *reinterpret_cast<const C*>(p[3] + i * st[3]));
      });
}

}  // namespace strata::cpu
