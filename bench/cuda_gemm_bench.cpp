// bf16 GEMM throughput through Backend::matmul (the path every linear layer takes on the GPU)
// against cublasLtMatmul called directly on the same shapes, operands and stream. The shapes are
// GPT-2 small's at 8 x 1024 tokens: the fused QKV, MLP up and down projections, and the LM head.
// Prints one JSON line per shape: both TFLOP/s and ours / direct.
//
//   strata_bench_cuda_gemm [iterations]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench/bench_flags.h"
#include "core/backend.h"
#include "core/bf16.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cublas_handle.h"
#include "core/tensor.h"

namespace {

using namespace strata;

struct Shape3 {
  int64_t m, k, n;  // x [m, k] times W^T with W [n, k]
};

Tensor random_bf16(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<bf16> host(size_t(rows * cols));
  for (bf16& v : host) v = bf16(dist(gen));
  Tensor t = Tensor::empty({rows, cols}, DType::bf16, Device::cuda(0));
  STRATA_CUDA_CHECK(
      cudaMemcpy(t.raw_data(), host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  return t;
}

// Milliseconds per call of fn, from events on the compute stream after `warmup` calls.
template <class Fn>
double time_ms(cudaStream_t s, int warmup, int iters, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start, stop;
  STRATA_CUDA_CHECK(cudaEventCreate(&start));
  STRATA_CUDA_CHECK(cudaEventCreate(&stop));
  STRATA_CUDA_CHECK(cudaEventRecord(start, s));
  for (int i = 0; i < iters; ++i) fn();
  STRATA_CUDA_CHECK(cudaEventRecord(stop, s));
  STRATA_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  STRATA_CUDA_CHECK(cudaEventDestroy(start));
  STRATA_CUDA_CHECK(cudaEventDestroy(stop));
  return double(ms) / iters;
}

// The reference: one cuBLASLt call, column-major C^T = W x^T, best heuristic algorithm, its own
// handle and a 32 MiB workspace (what cuBLASLt's documentation recommends on Hopper).
class DirectLt {
 public:
  DirectLt(const Shape3& s, const void* x, const void* w, void* out) : x_(x), w_(w), out_(out) {
    STRATA_CUBLAS_CHECK(cublasLtCreate(&lt_));
    STRATA_CUDA_CHECK(cudaMalloc(&ws_, kWorkspace));
    STRATA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    STRATA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    STRATA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    STRATA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_16BF, s.k, s.n, s.k));
    STRATA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_16BF, s.k, s.m, s.k));
    STRATA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c_, CUDA_R_16BF, s.n, s.m, s.n));
    cublasLtMatmulPreference_t pref;
    STRATA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kWorkspace;
    STRATA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    STRATA_CUBLAS_CHECK(
        cublasLtMatmulAlgoGetHeuristic(lt_, desc_, a_, b_, c_, c_, pref, 1, &result, &found));
    STRATA_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0) {
      std::fprintf(stderr, "cuBLASLt has no algorithm for %lld x %lld x %lld\n",
                   static_cast<long long>(s.m), static_cast<long long>(s.k),
                   static_cast<long long>(s.n));
      std::exit(1);
    }
    algo_ = result.algo;
  }
  ~DirectLt() {
    cublasLtMatrixLayoutDestroy(a_);
    cublasLtMatrixLayoutDestroy(b_);
    cublasLtMatrixLayoutDestroy(c_);
    cublasLtMatmulDescDestroy(desc_);
    cudaFree(ws_);
    cublasLtDestroy(lt_);
  }
  void run(cudaStream_t s) const {
    const float alpha = 1.0f, beta = 0.0f;
    STRATA_CUBLAS_CHECK(cublasLtMatmul(lt_, desc_, &alpha, w_, a_, x_, b_, &beta, out_, c_, out_,
                                       c_, &algo_, ws_, kWorkspace, s));
  }

 private:
  static constexpr size_t kWorkspace = size_t(32) << 20;
  const void* x_;
  const void* w_;
  void* out_;
  cublasLtHandle_t lt_ = nullptr;
  void* ws_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
};

}  // namespace

int main(int argc, char** argv) {
  int iters = 50;
  bench::BenchFlags flags("strata_bench_cuda_gemm",
                          "bf16 GEMM through our op against cuBLASLt called directly.");
  flags.add("iters", &iters, "timed iterations per shape", 1, 1000000);
  flags.parse(argc, argv);
  if (cuda::device_count() == 0) {
    std::printf("{\"bench\": \"cuda_gemm_bf16\", \"skipped\": \"no CUDA device\"}\n");
    return 0;
  }
  const Shape3 shapes[] = {
      {8192, 768, 2304}, {8192, 768, 3072}, {8192, 3072, 768}, {8192, 768, 50257}};
  cuda::DeviceGuard guard(0);
  cudaStream_t s = cuda::stream(0);
  Backend& be = backend_for(Device::cuda(0));
  for (const Shape3& sh : shapes) {
    const Tensor x = random_bf16(sh.m, sh.k, 1);
    const Tensor w = random_bf16(sh.n, sh.k, 2);
    Tensor out = Tensor::empty({sh.m, sh.n}, DType::bf16, Device::cuda(0));
    Tensor out_ref = Tensor::empty({sh.m, sh.n}, DType::bf16, Device::cuda(0));
    // As linear() calls it: x [1, m, k], W^T as a [1, k, n] view of W, batch stride 0.
    const Tensor x3 = make_view(x, {1, sh.m, sh.k}, {0, sh.k, 1}, 0);
    const Tensor wt = make_view(w, {1, sh.k, sh.n}, {0, 1, sh.k}, 0);
    const Tensor o3 = make_view(out, {1, sh.m, sh.n}, {0, sh.n, 1}, 0);
    DirectLt direct(sh, x.raw_data(), w.raw_data(), out_ref.raw_data());
    const int warmup = 5;
    const double ours =
        time_ms(s, warmup, iters, [&] { be.matmul(x3, false, wt, false, o3, 1, 0); });
    const double ref = time_ms(s, warmup, iters, [&] { direct.run(s); });
    const double flop = 2.0 * double(sh.m) * double(sh.n) * double(sh.k);
    const double ours_tf = flop / (ours * 1e-3) / 1e12, ref_tf = flop / (ref * 1e-3) / 1e12;
    std::printf(
        "{\"bench\": \"cuda_gemm_bf16\", \"m\": %lld, \"k\": %lld, \"n\": %lld, \"iters\": %d, "
        "\"ours_ms\": %.4f, \"cublaslt_ms\": %.4f, \"ours_tflops\": %.1f, "
        "\"cublaslt_tflops\": %.1f, \"ratio\": %.3f}\n",
        static_cast<long long>(sh.m), static_cast<long long>(sh.k), static_cast<long long>(sh.n),
        iters, ours, ref, ours_tf, ref_tf, ours_tf / ref_tf);
    std::fflush(stdout);
  }
  return 0;
}
