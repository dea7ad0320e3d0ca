// LayerNorm and RMSNorm over the last dim of contiguous [rows, n] tensors, with the CPU's
// semantics (norm_kernels.h): mean and rstd in acc_t<T>, biased variance from a second pass over
// the centred row, RMSNorm as LayerNorm without centring and bias.
//
// Backward: dx row by row; dw and db by a two-pass column reduction (fixed chunks of rows into
// f32/f64 partial rows, then the chunks summed in order), so they are deterministic without
// floating-point atomics.
#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/row_kernels.cuh"

namespace strata::cuda {

namespace {

using namespace rows;

// mean is null for RMSNorm (then the centre is 0).
template <class T, int kThreads>
__global__ void __launch_bounds__(RowOwner<kThreads>::kBlock)
    norm_forward_kernel(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                        int64_t nrows, int64_t n, double eps, bool centred) {
  using A = acc_t<T>;
  using Owner = RowOwner<kThreads>;
  __shared__ A smem[32];
  const int64_t row = Owner::row();
  if (row >= nrows) return;
  const T* xr = x + row * n;
  T* yr = y + row * n;
  A c = 0;
  if (centred) {
    A sx = 0;
    for (int64_t j = Owner::rank(); j < n; j += kThreads) sx += A(load(xr[j]));
    c = Owner::allreduce(sx, SumOp{}, smem) / A(n);
  }
  A ss = 0;
  for (int64_t j = Owner::rank(); j < n; j += kThreads) {
    const A d = A(load(xr[j])) - c;
    ss += d * d;
  }
  ss = Owner::allreduce(ss, SumOp{}, smem);
  const A rs = A(1) / sqrt(ss / A(n) + A(eps));
  if (Owner::rank() == 0) {
    if (mean) mean[row] = c;
    rstd[row] = rs;
  }
  for (int64_t j = Owner::rank(); j < n; j += kThreads) {
    A v = (A(load(xr[j])) - c) * rs;
    if (w) v *= A(load(w[j]));
    if (b) v += A(load(b[j]));
    yr[j] = convert<T>(v);
  }
}

// dx = rstd * (g - centred * mean(g) - xhat * mean(g * xhat)) with g = dy * w and
// xhat = (x - centre) * rstd.
template <class T, int kThreads>
__global__ void __launch_bounds__(RowOwner<kThreads>::kBlock)
    norm_backward_dx_kernel(const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd,
                            const T* dy, T* dx, int64_t nrows, int64_t n) {
  using A = acc_t<T>;
  using Owner = RowOwner<kThreads>;
  __shared__ Sum2<A> smem[32];
  const int64_t row = Owner::row();
  if (row >= nrows) return;
  const T* xr = x + row * n;
  const T* dyr = dy + row * n;
  T* dxr = dx + row * n;
  const A c = mean ? mean[row] : A(0), rs = rstd[row];
  Sum2<A> acc{0, 0};
  for (int64_t j = Owner::rank(); j < n; j += kThreads) {
    const A xh = (A(load(xr[j])) - c) * rs;
    const A g = w ? A(load(dyr[j])) * A(load(w[j])) : A(load(dyr[j]));
    acc.a += g;
    acc.b += g * xh;
  }
  acc = Owner::allreduce(acc, SumOp{}, smem);
  const A inv_n = A(1) / A(n);
  const A mg = mean ? acc.a * inv_n : A(0), mgx = acc.b * inv_n;
  for (int64_t j = Owner::rank(); j < n; j += kThreads) {
    const A xh = (A(load(xr[j])) - c) * rs;
    const A g = w ? A(load(dyr[j])) * A(load(w[j])) : A(load(dyr[j]));
    dxr[j] = convert<T>(rs * (g - mg - xh * mgx));
  }
}

constexpr int kColumnThreads = 256;

// Pass 1: chunk blockIdx.y of rows, columns blockIdx.x * 256 + threadIdx.x: the chunk's sums of
// dy * xhat and of dy into partial rows pdw / pdb ([chunks, n]; either may be null).
template <class T>
__global__ void __launch_bounds__(kColumnThreads)
    norm_backward_partial_kernel(const T* x, const acc_t<T>* mean, const acc_t<T>* rstd,
                                 const T* dy, acc_t<T>* pdw, acc_t<T>* pdb, int64_t nrows,
                                 int64_t n, int64_t chunk) {
  using A = acc_t<T>;
  const int64_t j = int64_t(blockIdx.x) * kColumnThreads + threadIdx.x;
  if (j >= n) return;
  const int64_t r0 = int64_t(blockIdx.y) * chunk, r1 = r0 + chunk < nrows ? r0 + chunk : nrows;
  A sw = 0, sb = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const A d = load(dy[r * n + j]);
    if (pdw) sw += d * ((A(load(x[r * n + j])) - (mean ? mean[r] : A(0))) * rstd[r]);
    sb += d;
  }
  if (pdw) pdw[int64_t(blockIdx.y) * n + j] = sw;
  if (pdb) pdb[int64_t(blockIdx.y) * n + j] = sb;
}

// Pass 2: each column's chunk sums, added in chunk order.
template <class T>
__global__ void __launch_bounds__(kColumnThreads)
    norm_backward_final_kernel(const acc_t<T>* pdw, const acc_t<T>* pdb, T* dw, T* db,
                               int64_t chunks, int64_t n) {
  using A = acc_t<T>;
  const int64_t j = int64_t(blockIdx.x) * kColumnThreads + threadIdx.x;
  if (j >= n) return;
  A sw = 0, sb = 0;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    if (dw) sw += pdw[ch * n + j];
    if (db) sb += pdb[ch * n + j];
  }
  if (dw) dw[j] = convert<T>(sw);
  if (db) db[j] = convert<T>(sb);
}

template <class T>
void launch_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                    const Tensor& mean, const Tensor& rstd, bool centred) {
  using A = acc_t<T>;
  const int64_t nrows = rows_of(x), n = cols_of(x);
  if (nrows == 0 || n == 0) return;
  const int device = y.device().index;
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  with_row_owner(n, [&]<int kThreads>() {
    norm_forward_kernel<T, kThreads>
        <<<RowOwner<kThreads>::grid(nrows), RowOwner<kThreads>::kBlock, 0, s>>>(
            ptr<const T>(x), ptr<const T>(w), ptr<const T>(b), ptr<T>(y), ptr<A>(mean),
            ptr<A>(rstd), nrows, n, eps, centred);
    STRATA_CUDA_CHECK_LAUNCH();
  });
}

template <class T>
void launch_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                     const Tensor& dy, const Tensor& dx, const Tensor& dw, const Tensor& db) {
  using A = acc_t<T>;
  const int64_t nrows = rows_of(x), n = cols_of(x);
  if (n == 0) return;
  const Device dev = x.device();
  DeviceGuard guard(dev.index);
  cudaStream_t s = stream(dev.index);
  if (nrows == 0) {
    // No rows: the weight gradients are empty sums (all-zero bits are 0 in every float type).
    for (const Tensor* g : {&dw, &db})
      if (g->defined())
        STRATA_CUDA_CHECK(cudaMemsetAsync(g->raw_data(), 0, size_t(n) * sizeof(T), s));
    return;
  }
  if (dx.defined()) {
    with_row_owner(n, [&]<int kThreads>() {
      norm_backward_dx_kernel<T, kThreads>
          <<<RowOwner<kThreads>::grid(nrows), RowOwner<kThreads>::kBlock, 0, s>>>(
              ptr<const T>(x), ptr<const T>(w), ptr<const A>(mean), ptr<const A>(rstd),
              ptr<const T>(dy), ptr<T>(dx), nrows, n);
      STRATA_CUDA_CHECK_LAUNCH();
    });
  }
  if (!dw.defined() && !db.defined()) return;
  // The chunking depends only on the shape: at most 512 chunks of at least 16 rows, enough
  // blocks to fill the GPU for the usual [tokens, hidden] shapes.
  const int64_t chunk = std::max<int64_t>(16, (nrows + 511) / 512);
  const int64_t chunks = (nrows + chunk - 1) / chunk;
  const DType acc = std::is_same_v<A, double> ? DType::f64 : DType::f32;
  Tensor pdw = dw.defined() ? Tensor::empty({chunks, n}, acc, dev) : Tensor();
  Tensor pdb = db.defined() ? Tensor::empty({chunks, n}, acc, dev) : Tensor();
  const dim3 grid(ceil_div(n, kColumnThreads), unsigned(chunks));
  norm_backward_partial_kernel<T>
      <<<grid, kColumnThreads, 0, s>>>(ptr<const T>(x), ptr<const A>(mean), ptr<const A>(rstd),
                                       ptr<const T>(dy), ptr<A>(pdw), ptr<A>(pdb), nrows, n, chunk);
  STRATA_CUDA_CHECK_LAUNCH();
  norm_backward_final_kernel<T><<<ceil_div(n, kColumnThreads), kColumnThreads, 0, s>>>(
      ptr<const A>(pdw), ptr<const A>(pdb), ptr<T>(dw), ptr<T>(db), chunks, n);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                             const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const auto run = [&]<class T>() { launch_forward<T>(x, w, b, eps, y, mean, rstd, true); };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "layer_norm", run);
}

void CudaBackend::layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                                      const Tensor& dw, const Tensor& db) {
  const auto run = [&]<class T>() { launch_backward<T>(x, w, mean, rstd, dy, dx, dw, db); };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "layer_norm_backward", run);
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                           const Tensor& rstd) {
  const auto run = [&]<class T>() {
    launch_forward<T>(x, w, Tensor(), eps, y, Tensor(), rstd, false);
  };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "rms_norm", run);
}

void CudaBackend::rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd,
                                    const Tensor& dy, const Tensor& dx, const Tensor& dw) {
  const auto run = [&]<class T>() {
    launch_backward<T>(x, w, Tensor(), rstd, dy, dx, dw, Tensor());
  };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "rms_norm_backward", run);
}

}  // namespace strata::cuda
