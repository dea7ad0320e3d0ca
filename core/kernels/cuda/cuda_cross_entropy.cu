// Cross-entropy over contiguous logits [rows, V] with int64 targets, with the CPU's semantics
// (cross_entropy_kernels.h): per row, lse = log(sum_j exp(logit[j])) and
//   loss = lse - ((1 - ls) * logit[t] + ls / V * sum_j logit[j]),
// loss 0 (lse still written) and zero gradient for ignore_index rows.
//
// One warp or block per row reads the row once: each thread keeps an online (max, sum of exp)
// pair and the plain sum over its elements, so vocabularies of 32k-50k entries need no second
// pass for the statistics.
//
// Targets. A target outside [0, V) that is not ignore_index is an error, as on the CPU; the
// forward finds it on the device and throws after reading one flag back, which synchronises the
// stream once per call (the mean reduction of the loss reads a value back anyway). The backward
// takes the forward's targets as checked and writes NaN into a row with a bad target instead.
#include <climits>
#include <type_traits>

#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/row_kernels.cuh"

namespace strata::cuda {

namespace {

using namespace rows;

template <class A>
struct RowStats {
  MaxSum<A> e;  // max and sum of exp(x - max)
  A sum_x;
};

template <class A>
__device__ inline RowStats<A> shfl_xor(RowStats<A> v, int lane_mask) {
  return {rows::shfl_xor(v.e, lane_mask), rows::shfl_xor(v.sum_x, lane_mask)};
}

struct RowStatsOp {
  template <class A>
  __device__ RowStats<A> operator()(RowStats<A> x, RowStats<A> y) const {
    return {combine(x.e, y.e), x.sum_x + y.sum_x};
  }
};

template <class T, int kThreads>
__global__ void __launch_bounds__(RowOwner<kThreads>::kBlock)
    cross_entropy_forward_kernel(const T* logits, const int64_t* target, int64_t nrows, int64_t V,
                                 int64_t ignore_index, double smoothing, acc_t<T>* loss,
                                 acc_t<T>* lse, unsigned long long* bad_row) {
  using A = acc_t<T>;
  using Owner = RowOwner<kThreads>;
  __shared__ RowStats<A> smem[32];
  const int64_t row = Owner::row();
  if (row >= nrows) return;
  const T* x = logits + row * V;
  RowStats<A> st{{-infinity<A>(), A(0)}, A(0)};
  for (int64_t j = Owner::rank(); j < V; j += kThreads) {
    const A v = load(x[j]);
    st.e = push(st.e, v);
    st.sum_x += v;
  }
  st = Owner::allreduce(st, RowStatsOp{}, smem);
  if (Owner::rank() != 0) return;
  // A max of +-inf gives NaN, as the CPU's exp(x - max) does.
  const A l = st.e.m + log_acc(isfinite(st.e.m) ? st.e.s : A(NAN));
  if (lse) lse[row] = l;
  const int64_t t = target[row];
  if (t == ignore_index) {
    loss[row] = 0;
  } else if (t < 0 || t >= V) {
    atomicMin(bad_row, static_cast<unsigned long long>(row));
    loss[row] = A(NAN);
  } else {
    // Without smoothing the sum term is skipped, so a -inf logit elsewhere cannot turn 0 * inf
    // into NaN.
    const A ls = A(smoothing);
    A picked = load(x[t]);
    if (ls != A(0)) picked = (A(1) - ls) * picked + ls / A(V) * st.sum_x;
    loss[row] = l - picked;
  }
}

// dlogits = dloss * (softmax(logits) - (1 - ls) * onehot(t) - ls / V).
template <class T, int kThreads>
__global__ void __launch_bounds__(RowOwner<kThreads>::kBlock)
    cross_entropy_backward_kernel(const T* logits, const int64_t* target, const acc_t<T>* lse,
                                  const acc_t<T>* dloss, int64_t nrows, int64_t V,
                                  int64_t ignore_index, double smoothing, T* dlogits) {
  using A = acc_t<T>;
  using Owner = RowOwner<kThreads>;
  const int64_t row = Owner::row();
  if (row >= nrows) return;
  const T* x = logits + row * V;
  T* dx = dlogits + row * V;
  const int64_t t = target[row];
  if (t == ignore_index || t < 0 || t >= V) {
    const T fillv = convert<T>(t == ignore_index ? A(0) : A(NAN));
    for (int64_t j = Owner::rank(); j < V; j += kThreads) dx[j] = fillv;
    return;
  }
  const A ls = A(smoothing);
  const A d = dloss[row], l = lse[row];
  const A off = d * ls / A(V), hit = d * (A(1) - ls);
  for (int64_t j = Owner::rank(); j < V; j += kThreads) {
    A v = d * exp_acc(A(load(x[j])) - l) - off;
    if (j == t) v -= hit;
    dx[j] = convert<T>(v);
  }
}

void check_vocab(const char* op, int64_t V) {
  STRATA_CHECK(V > 0, op, ": got V=", V, ", expected V > 0");
}

}  // namespace

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                double smoothing, const Tensor& loss, const Tensor& lse) {
  const int64_t nrows = rows_of(logits), V = cols_of(logits);
  check_vocab("cross_entropy", V);
  if (nrows == 0) return;
  STRATA_CHECK(target.dtype() == DType::i64, "cross_entropy: target is ",
               dtype_name(target.dtype()), ", expected i64");
  const Device dev = loss.device();
  DeviceGuard guard(dev.index);
  cudaStream_t s = stream(dev.index);
  Tensor flag = Tensor::empty({1}, DType::i64, dev);
  auto* bad_row = static_cast<unsigned long long*>(flag.raw_data());
  STRATA_CUDA_CHECK(cudaMemsetAsync(bad_row, 0xff, sizeof(unsigned long long), s));
  const auto run = [&]<class T>() {
    using A = acc_t<T>;
    with_row_owner(V, [&]<int kThreads>() {
      cross_entropy_forward_kernel<T, kThreads>
          <<<RowOwner<kThreads>::grid(nrows), RowOwner<kThreads>::kBlock, 0, s>>>(
              ptr<const T>(logits), ptr<const int64_t>(target), nrows, V, ignore_index, smoothing,
              ptr<A>(loss), ptr<A>(lse), bad_row);
      STRATA_CUDA_CHECK_LAUNCH();
    });
  };
  STRATA_CUDA_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", run);
  unsigned long long first_bad = 0;
  STRATA_CUDA_CHECK(
      cudaMemcpyAsync(&first_bad, bad_row, sizeof(first_bad), cudaMemcpyDeviceToHost, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  if (first_bad == ULLONG_MAX) return;
  int64_t t = 0;
  STRATA_CUDA_CHECK(cudaMemcpyAsync(&t, ptr<const int64_t>(target) + first_bad, sizeof(t),
                                    cudaMemcpyDeviceToHost, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  STRATA_FAIL("cross_entropy: target ", t, " at row ", int64_t(first_bad),
              " is out of range, expected 0 <= target < V=", V, " or ignore_index=", ignore_index);
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target,
                                         const Tensor& lse, const Tensor& dloss,
                                         int64_t ignore_index, double smoothing,
                                         const Tensor& dlogits) {
  const int64_t nrows = rows_of(logits), V = cols_of(logits);
  check_vocab("cross_entropy_backward", V);
  if (nrows == 0) return;
  STRATA_CHECK(target.dtype() == DType::i64, "cross_entropy_backward: target is ",
               dtype_name(target.dtype()), ", expected i64");
  const int device = dlogits.device().index;
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  const auto run = [&]<class T>() {
    using A = acc_t<T>;
    const DType acc = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    STRATA_CHECK(dloss.dtype() == acc, "cross_entropy_backward: loss gradient is ",
                 dtype_name(dloss.dtype()), ", expected ", dtype_name(acc));
    with_row_owner(V, [&]<int kThreads>() {
      cross_entropy_backward_kernel<T, kThreads>
          <<<RowOwner<kThreads>::grid(nrows), RowOwner<kThreads>::kBlock, 0, s>>>(
              ptr<const T>(logits), ptr<const int64_t>(target), ptr<const A>(lse),
              ptr<const A>(dloss), nrows, V, ignore_index, smoothing, ptr<T>(dlogits));
      STRATA_CUDA_CHECK_LAUNCH();
    });
  };
  STRATA_CUDA_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", run);
}

}  // namespace strata::cuda
