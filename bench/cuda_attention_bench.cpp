// CUDA fused attention forward and backward through the backend, timed with CUDA events on the
// compute stream. Prints one JSON line per configuration: GPT-2-small's attention (bf16, causal,
// no bias) and the same shape with a T5-style per-head bias (non-causal, dbias computed).
//
//   strata_bench_cuda_attention [reps] [B H L D]
//
// FLOPs: the forward does two matmuls over the visible (query, key) pairs, 4 * D flops per pair;
// the backward five (S recomputed, dP, dV, dK, dQ), 2.5x the forward.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "core/backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/ops/factory.h"
#include "core/ops/shape.h"

namespace {

using namespace strata;

Tensor to_gpu(const Tensor& x) {
  const Tensor c = x.contiguous();
  Tensor d = Tensor::empty(c.shape(), c.dtype(), Device::cuda(0));
  cuda::synchronize(0);
  STRATA_CUDA_CHECK(
      cudaMemcpy(d.raw_data(), c.raw_data(), c.numel() * c.element_size(), cudaMemcpyHostToDevice));
  return d;
}

// Median milliseconds of `reps` runs of f on the compute stream, after one warm-up run.
double median_ms(int reps, const std::function<void()>& f) {
  cudaStream_t st = cuda::stream(0);
  cudaEvent_t a, b;
  STRATA_CUDA_CHECK(cudaEventCreate(&a));
  STRATA_CUDA_CHECK(cudaEventCreate(&b));
  f();
  cuda::synchronize(0);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    STRATA_CUDA_CHECK(cudaEventRecord(a, st));
    f();
    STRATA_CUDA_CHECK(cudaEventRecord(b, st));
    STRATA_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  STRATA_CUDA_CHECK(cudaEventDestroy(a));
  STRATA_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void run_case(int reps, int64_t B, int64_t H, int64_t L, int64_t D, bool causal, bool bias,
              DType dtype) {
  const Device gpu = Device::cuda(0);
  const Tensor q = to_gpu(randn({B, H, L, D}, {7, 1}).to(dtype));
  const Tensor k = to_gpu(randn({B, H, L, D}, {7, 2}).to(dtype));
  const Tensor v = to_gpu(randn({B, H, L, D}, {7, 3}).to(dtype));
  const Tensor dout = to_gpu(randn({B, H, L, D}, {7, 4}).to(dtype));
  Tensor b, bview, dbias;
  if (bias) {
    b = to_gpu(randn({1, H, L, L}, {7, 5}).to(dtype));
    bview = broadcast_to(b, {B, H, L, L});
    dbias = empty({1, H, L, L}, dtype, gpu);
  }
  const Tensor out = empty({B, H, L, D}, dtype, gpu);
  const Tensor lse = empty({B, H, L}, DType::f32, gpu);
  const Tensor dq = empty({B, H, L, D}, dtype, gpu), dk = empty({B, H, L, D}, dtype, gpu),
               dv = empty({B, H, L, D}, dtype, gpu);
  const AttentionParams p{1.0 / std::sqrt(double(D)), causal};
  Backend& be = backend_for(gpu);
  const double fwd_ms = median_ms(reps, [&] { be.attention(q, k, v, bview, {}, p, out, lse); });
  const double bwd_ms = median_ms(reps, [&] {
    be.attention_backward(q, k, v, bview, {}, p, out, lse, dout, dq, dk, dv, dbias);
  });
  const double pairs = causal ? double(L) * double(L + 1) / 2 : double(L) * double(L);
  const double fwd_flop = 4.0 * double(B) * double(H) * pairs * double(D);
  const double bwd_flop = 2.5 * fwd_flop;
  std::printf(
      "{\"bench\": \"cuda_attention\", \"dtype\": \"%s\", \"B\": %lld, \"H\": %lld, \"L\": %lld, "
      "\"D\": %lld, \"causal\": %s, \"bias\": %s, \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, "
      "\"fwd_tflops\": %.2f, \"bwd_tflops\": %.2f, \"fwd_bwd_tflops\": %.2f}\n",
      std::string(dtype_name(dtype)).c_str(), (long long)B, (long long)H, (long long)L,
      (long long)D, causal ? "true" : "false", bias ? "true" : "false", fwd_ms, bwd_ms,
      fwd_flop / fwd_ms * 1e-9, bwd_flop / bwd_ms * 1e-9,
      (fwd_flop + bwd_flop) / (fwd_ms + bwd_ms) * 1e-9);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  int64_t B = 8, H = 12, L = 1024, D = 64;  // GPT-2 small
  strata::bench::BenchFlags flags("strata_bench_cuda_attention",
                                  "Attention forward + backward TFLOP/s on the GPU, bf16.");
  flags.add("reps", &reps, "timed repetitions", 1, 100000);
  flags.add("batch", &B, "batch", 1, 1 << 16);
  flags.add("heads", &H, "heads", 1, 1 << 16);
  flags.add("len", &L, "sequence length", 1, 1 << 20);
  flags.add("dim", &D, "head dimension", 1, 1 << 12);
  flags.parse(argc, argv);
  if (strata::cuda::device_count() == 0) {
    std::printf("{\"bench\": \"cuda_attention\", \"skipped\": \"no CUDA device\"}\n");
    return 0;
  }
  try {
    run_case(reps, B, H, L, D, /*causal=*/true, /*bias=*/false, strata::DType::bf16);
    run_case(reps, B, H, L, D, /*causal=*/false, /*bias=*/true, strata::DType::bf16);
    run_case(reps, B, H, L, D, /*causal=*/true, /*bias=*/false, strata::DType::f32);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_attention_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
