// Softmax and log-softmax over the last dim of contiguous [rows, n] tensors, with the CPU's
// semantics (softmax_kernels.h): statistics in acc_t<T>, and a row whose max is +-inf or that
// holds a NaN gives NaN. The max and the sum of exponentials come from one online pass.
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/row_kernels.cuh"

namespace strata::cuda {

namespace {

using namespace rows;

template <class T, int kThreads>
__global__ void __launch_bounds__(RowOwner<kThreads>::kBlock)
    softmax_forward_kernel(const T* x, T* y, int64_t nrows, int64_t n, bool log) {
  using A = acc_t<T>;
  using Owner = RowOwner<kThreads>;
  __shared__ MaxSum<A> smem[32];
  const int64_t row = Owner::row();
  if (row >= nrows) return;
  const T* xr = x + row * n;
  T* yr = y + row * n;
  MaxSum<A> st{-infinity<A>(), A(0)};
  for (int64_t j = Owner::rank(); j < n; j += kThreads) st = push(st, A(load(xr[j])));
  st = Owner::allreduce(st, MaxSumOp{}, smem);
  const A m = st.m;
  const A s = isfinite(m) ? st.s : A(NAN);
  if (log) {
    const A shift = m + log_acc(s);
    for (int64_t j = Owner::rank(); j < n; j += kThreads)
      yr[j] = convert<T>(A(load(xr[j])) - shift);
  } else {
    const A inv = A(1) / s;
    for (int64_t j = Owner::rank(); j < n; j += kThreads)
      yr[j] = convert<T>(exp_acc(A(load(xr[j])) - m) * inv);
  }
}

// softmax: dx = y * (dy - sum(dy * y)); log-softmax: dx = dy - exp(y) * sum(dy).
template <class T, int kThreads>
__global__ void __launch_bounds__(RowOwner<kThreads>::kBlock)
    softmax_backward_kernel(const T* y, const T* dy, T* dx, int64_t nrows, int64_t n, bool log) {
  using A = acc_t<T>;
  using Owner = RowOwner<kThreads>;
  __shared__ A smem[32];
  const int64_t row = Owner::row();
  if (row >= nrows) return;
  const T* yr = y + row * n;
  const T* dyr = dy + row * n;
  T* dxr = dx + row * n;
  A s = 0;
  for (int64_t j = Owner::rank(); j < n; j += kThreads)
    s += log ? A(load(dyr[j])) : A(load(dyr[j])) * A(load(yr[j]));
  s = Owner::allreduce(s, SumOp{}, smem);
  for (int64_t j = Owner::rank(); j < n; j += kThreads) {
    const A yv = load(yr[j]), g = load(dyr[j]);
    dxr[j] = convert<T>(log ? g - exp_acc(yv) * s : yv * (g - s));
  }
}

}  // namespace

void CudaBackend::softmax(const Tensor& x, const Tensor& y, bool log) {
  const int64_t nrows = rows_of(x), n = cols_of(x);
  if (nrows == 0 || n == 0) return;
  const int device = y.device().index;
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  const auto run = [&]<class T>() {
    with_row_owner(n, [&]<int kThreads>() {
      softmax_forward_kernel<T, kThreads>
          <<<RowOwner<kThreads>::grid(nrows), RowOwner<kThreads>::kBlock, 0, s>>>(
              ptr<const T>(x), ptr<T>(y), nrows, n, log);
      STRATA_CUDA_CHECK_LAUNCH();
    });
  };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "softmax", run);
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) {
  const int64_t nrows = rows_of(y), n = cols_of(y);
  if (nrows == 0 || n == 0) return;
  const int device = dx.device().index;
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  const auto run = [&]<class T>() {
    with_row_owner(n, [&]<int kThreads>() {
      softmax_backward_kernel<T, kThreads>
          <<<RowOwner<kThreads>::grid(nrows), RowOwner<kThreads>::kBlock, 0, s>>>(
              ptr<const T>(y), ptr<const T>(dy), ptr<T>(dx), nrows, n, log);
      STRATA_CUDA_CHECK_LAUNCH();
    });
  };
  STRATA_CUDA_DISPATCH_FLOAT(y.dtype(), "softmax_backward", run);
}

}  // namespace strata::cuda
