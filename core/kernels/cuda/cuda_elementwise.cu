// Element-wise unary/binary/where kernels, their derivatives and the gated activations, over any
// strides and dtypes. The scalar formulas are the CPU backend's, from the one shared header
// (core/kernels/unary_math.h), with CUDA's math functions.
#include <cuda_bf16.h>

#include <cmath>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/kernels/cuda/cuda_strided.cuh"
#include "core/kernels/unary_math.h"

namespace strata::cuda {

namespace {

// The device math primitives of core/kernels/unary_math.h's formulas (its M), in the compute
// type: the f32 functions for f32 and bf16, f64 for f64 and integers.
struct DeviceMath {
  __device__ static float exp(float x) { return expf(x); }
  __device__ static double exp(double x) { return ::exp(x); }
  __device__ static float log(float x) { return logf(x); }
  __device__ static double log(double x) { return ::log(x); }
  __device__ static float log1p(float x) { return log1pf(x); }
  __device__ static double log1p(double x) { return ::log1p(x); }
  __device__ static float sqrt(float x) { return sqrtf(x); }
  __device__ static double sqrt(double x) { return ::sqrt(x); }
  __device__ static float tanh(float x) { return tanhf(x); }
  __device__ static double tanh(double x) { return ::tanh(x); }
  __device__ static float erfc(float x) { return erfcf(x); }
  __device__ static double erfc(double x) { return ::erfc(x); }
  __device__ static float pow(float x, float y) { return powf(x, y); }
  __device__ static double pow(double x, double y) { return ::pow(x, y); }
  __device__ static float sin(float x) { return sinf(x); }
  __device__ static double sin(double x) { return ::sin(x); }
  __device__ static float cos(float x) { return cosf(x); }
  __device__ static double cos(double x) { return ::cos(x); }
  __device__ static float abs(float x) { return fabsf(x); }
  __device__ static double abs(double x) { return fabs(x); }
};

using kernels::Act;

template <class A>
__device__ __forceinline__ void act_vg(Act act, A x, A& v, A& d) {
  kernels::act_vg<DeviceMath>(act, x, v, d);
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
// Integers compute in f64, as on the CPU.
template <class T>
using unary_compute_t = std::conditional_t<std::is_integral_v<T>, double, acc_t<T>>;

template <class T>
struct UnaryFn {
  T* out;
  const T* x;
  UnaryOp op;
  double pa, pb;
  __device__ void operator()(const int64_t (&off)[2]) const {
    using C = unary_compute_t<T>;
    const C v = kernels::unary_value<DeviceMath, C>(op, C(load_acc(x + off[1])), pa, pb);
    if constexpr (std::is_integral_v<T>)
      out[off[0]] = T(v);
    else
      store_acc<T>(out + off[0], v);
  }
};

template <class T>
struct UnaryBackwardFn {
  T* dx;
  const T* x;
  const T* y;
  const T* dy;
  UnaryOp op;
  double pa, pb;
  __device__ void operator()(const int64_t (&off)[4]) const {
    using C = acc_t<T>;
    const C d = kernels::unary_derivative<DeviceMath, C>(op, load_acc(x + off[1]),
                                                         load_acc(y + off[2]), pa, pb);
    store_acc<T>(dx + off[0], C(load_acc(dy + off[3]) * d));
  }
};

// The CPU computes bool arithmetic in int, integers in their own type (exact, truncating
// division) and floating types in compute_t.
template <class T>
using binary_compute_t = std::conditional_t<std::is_same_v<T, bool>, int,
                                            std::conditional_t<std::is_integral_v<T>, T, acc_t<T>>>;

template <class T>
__device__ __forceinline__ binary_compute_t<T> load_binary(const T* p) {
  if constexpr (std::is_integral_v<T>)
    return binary_compute_t<T>(*p);
  else
    return load_acc(p);
}

template <class T, class C>
__device__ __forceinline__ void store_binary(T* p, C v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *p = bf16_from_float(float(v));
  else
    *p = T(v);
}

template <class T>
struct BinaryFn {
  void* out;  // T, or bool for comparisons and logical ops
  const T* a;
  const T* b;
  BinaryOp op;
  __device__ void operator()(const int64_t (&off)[3]) const {
    using C = binary_compute_t<T>;
    const C x = load_binary(a + off[1]);
    const C y = load_binary(b + off[2]);
    T* o = static_cast<T*>(out) + off[0];
    bool* ob = static_cast<bool*>(out) + off[0];
    switch (op) {
      case BinaryOp::Add:
        store_binary(o, C(x + y));
        return;
      case BinaryOp::Sub:
        store_binary(o, C(x - y));
        return;
      case BinaryOp::Mul:
        store_binary(o, C(x * y));
        return;
      case BinaryOp::Div:
        if constexpr (std::is_integral_v<C>) {
          // Integer division by zero would trap; the CPU gives 0.
          *o = y == C(0) ? T(0) : T(x / y);
        } else {
          store_binary(o, C(x / y));
        }
        return;
      case BinaryOp::Maximum:  // NaN in either operand propagates (x + (y - y))
        store_binary(o, C(x > y ? x : (y > x ? y : x + (y - y))));
        return;
      case BinaryOp::Minimum:
        store_binary(o, C(x < y ? x : (y < x ? y : x + (y - y))));
        return;
      case BinaryOp::Eq:
        *ob = x == y;
        return;
      case BinaryOp::Ne:
        *ob = x != y;
        return;
      case BinaryOp::Lt:
        *ob = x < y;
        return;
      case BinaryOp::Le:
        *ob = x <= y;
        return;
      case BinaryOp::Gt:
        *ob = x > y;
        return;
      case BinaryOp::Ge:
        *ob = x >= y;
        return;
      case BinaryOp::LogicalAnd:
        *ob = x && y;
        return;
      case BinaryOp::LogicalOr:
        *ob = x || y;
        return;
    }
  }
};

template <class T>
struct WhereFn {
  T* out;
  const bool* cond;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t (&off)[4]) const {
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
};

// Gated forms over contiguous arrays: y = act(gate) * up; dgate = dy * up * act'(gate),
// dup = dy * act(gate) (either output may be null).
template <class T>
struct GatedFn {
  T* out;
  const T* gate;
  const T* up;
  Act act;
  __device__ void operator()(const int64_t (&off)[1]) const {
    using A = acc_t<T>;
    const int64_t i = off[0];
    A v, d;
    act_vg(act, load_acc(gate + i), v, d);
    store_acc<T>(out + i, A(v * load_acc(up + i)));
  }
};

template <class T>
struct GatedBackwardFn {
  T* dgate;
  T* dup;
  const T* gate;
  const T* up;
  const T* dy;
  Act act;
  __device__ void operator()(const int64_t (&off)[1]) const {
    using A = acc_t<T>;
    const int64_t i = off[0];
    A v, d;
    act_vg(act, load_acc(gate + i), v, d);
    const A g = load_acc(dy + i);
    if (dgate) store_acc<T>(dgate + i, A(g * load_acc(up + i) * d));
    if (dup) store_acc<T>(dup + i, A(g * v));
  }
};

// Every operand on the output's GPU.
int common_device(const char* op, const Tensor& out, std::initializer_list<const Tensor*> in) {
  const int dev = cuda_device_of(out, op);
  for (const Tensor* t : in)
    STRATA_CHECK(t->device() == out.device(), op, ": operand on ", t->device().str(),
                 ", output on ", out.device().str(), "; move it with .to(device)");
  return dev;
}

StridedIndexer<1> flat_indexer(int64_t n) {
  const int64_t sizes[1] = {n};
  const int64_t strides[1] = {1};
  return make_indexer<1>(std::span<const int64_t>(sizes, 1),
                         {std::span<const int64_t>(strides, 1)});
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  const int dev = common_device("unary", out, {&x});
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const auto ix = make_indexer<2>(out.shape(), {&out, &x});
  auto run = [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      STRATA_FAIL("unary: not defined for bool tensors");
    } else {
      launch_elementwise<2>(ix,
                            UnaryFn<T>{static_cast<T*>(out.raw_data()),
                                       static_cast<const T*>(x.raw_data()), op, p.a, p.b},
                            s);
    }
  };
  STRATA_CUDA_DISPATCH_ALL(x.dtype(), "unary", run);
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                                 const Tensor& dx, UnaryParams p) {
  const int dev = common_device("unary_backward", dx, {&x, &y, &dy});
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  // Only one of x and y is saved for each op; the other aliases it and is not read.
  const auto ix = make_indexer<4>(dx.shape(), {&dx, &x, &y, &dy});
  auto run = [&]<class T>() {
    launch_elementwise<4>(
        ix,
        UnaryBackwardFn<T>{static_cast<T*>(dx.raw_data()), static_cast<const T*>(x.raw_data()),
                           static_cast<const T*>(y.raw_data()),
                           static_cast<const T*>(dy.raw_data()), op, p.a, p.b},
        s);
  };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "unary_backward", run);
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int dev = common_device("binary", out, {&a, &b});
  STRATA_CHECK(a.dtype() == b.dtype(), "binary: operand dtypes differ (", dtype_name(a.dtype()),
               " and ", dtype_name(b.dtype()), ")");
  const bool to_bool = op >= BinaryOp::Eq;
  STRATA_CHECK(out.dtype() == (to_bool ? DType::b8 : a.dtype()), "binary: output dtype ",
               dtype_name(out.dtype()), " does not fit the op");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const auto ix = make_indexer<3>(out.shape(), {&out, &a, &b});
  auto run = [&]<class T>() {
    launch_elementwise<3>(ix,
                          BinaryFn<T>{out.raw_data(), static_cast<const T*>(a.raw_data()),
                                      static_cast<const T*>(b.raw_data()), op},
                          s);
  };
  STRATA_CUDA_DISPATCH_ALL(a.dtype(), "binary", run);
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int dev = common_device("where", out, {&cond, &a, &b});
  STRATA_CHECK(cond.dtype() == DType::b8, "where: condition must be bool, got ",
               dtype_name(cond.dtype()));
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const auto ix = make_indexer<4>(out.shape(), {&out, &cond, &a, &b});
  auto run = [&]<class T>() {
    launch_elementwise<4>(
        ix,
        WhereFn<T>{static_cast<T*>(out.raw_data()), static_cast<const bool*>(cond.raw_data()),
                   static_cast<const T*>(a.raw_data()), static_cast<const T*>(b.raw_data())},
        s);
  };
  STRATA_CUDA_DISPATCH_ALL(a.dtype(), "where", run);
}

void CudaBackend::gated(GatedAct act, const Tensor& gate, const Tensor& up, const Tensor& out) {
  const int dev = common_device("gated", out, {&gate, &up});
  STRATA_CHECK(gate.is_contiguous() && up.is_contiguous() && out.is_contiguous() &&
                   gate.numel() == up.numel() && gate.numel() == out.numel(),
               "gated: gate, up and out must be contiguous and of one size");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const auto ix = flat_indexer(gate.numel());
  auto run = [&]<class T>() {
    launch_elementwise<1>(
        ix,
        GatedFn<T>{static_cast<T*>(out.raw_data()), static_cast<const T*>(gate.raw_data()),
                   static_cast<const T*>(up.raw_data()), to_act(act)},
        s);
  };
  STRATA_CUDA_DISPATCH_FLOAT(gate.dtype(), "gated", run);
}

void CudaBackend::gated_backward(GatedAct act, const Tensor& gate, const Tensor& up,
                                 const Tensor& dy, const Tensor& dgate, const Tensor& dup) {
  const Tensor& ref = dgate.defined() ? dgate : dup;
  STRATA_CHECK(ref.defined(), "gated_backward: neither dgate nor dup is given");
  const int dev = common_device("gated_backward", ref, {&gate, &up, &dy});
  for (const Tensor* t : {&gate, &up, &dy, &dgate, &dup})
    STRATA_CHECK(!t->defined() || (t->is_contiguous() && t->numel() == gate.numel()),
                 "gated_backward: every operand must be contiguous and of one size");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const auto ix = flat_indexer(gate.numel());
  auto run = [&]<class T>() {
    T* dg = dgate.defined() ? static_cast<T*>(dgate.raw_data()) : nullptr;
    T* du = dup.defined() ? static_cast<T*>(dup.raw_data()) : nullptr;
    launch_elementwise<1>(ix,
                          GatedBackwardFn<T>{dg, du, static_cast<const T*>(gate.raw_data()),
                                             static_cast<const T*>(up.raw_data()),
                                             static_cast<const T*>(dy.raw_data()), to_act(act)},
                          s);
  };
  STRATA_CUDA_DISPATCH_FLOAT(gate.dtype(), "gated_backward", run);
}

}  // namespace strata::cuda
