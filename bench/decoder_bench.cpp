// Training throughput of the decoder LM: forward + backward + clip + AdamW on random tokens, the
// benchmark preset of issue 5 by default (d_model 256, 4 layers, 4 heads, d_ff 1024, seq 128,
// batch 16, vocab 8192). Prints one JSON line with tokens/s, MFU against the measured FMA peak,
// peak memory (allocator and process RSS), and the step's FLOPs at the rate of the model's largest
// GEMM timed in the same run (gemm_gflops, gemm_bound_ms; bench/gemm_rate.h).
//   strata_bench_decoder [--threads N] [--steps S] [--d_model D] [--layers L] [--seq T] [--batch B]
//                        [--gemm auto|avx2|openblas|dnnl] [--precision f32|bf16]
// The peak is the f32 FMA peak with the widest vectors the CPU has (core/fma_peak.h); both the zmm
// and ymm figures are printed, and on AVX512-BF16 CPUs the bf16 dot-product peak too, against
// which a bf16 run's mfu_bf16 is given. gemm_gflops times the GEMM in the run's precision.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "bench/bench_flags.h"
#include "bench/gemm_rate.h"
#include "core/fma_peak.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "models/decoder_lm.h"
#include "models/precision.h"
#include "optim/adamw.h"
#include "optim/clip.h"

using namespace strata;

int main(int argc, char** argv) {
  prefer_passive_omp_wait(argv);
  int threads = 1, steps = 12;
  models::DecoderConfig cfg;
  cfg.vocab = 8192;
  cfg.d_model = 256;
  cfg.n_layers = 4;
  cfg.n_heads = 4;
  cfg.d_ff = 1024;
  int64_t seq = 128, batch = 16;
  std::string precision_name = "f32";
  bench::BenchFlags flags("strata_bench_decoder",
                          "Decoder LM training throughput on random tokens; one JSON line.");
  flags.add("threads", &threads, "OpenMP threads", 1, 1024);
  flags.add("steps", &steps, "timed steps, after two warm-up steps", 1, 100000);
  flags.add("d_model", &cfg.d_model, "model width (a multiple of the 4 heads)", 4, 65536);
  flags.add("layers", &cfg.n_layers, "decoder layers", 1, 1024);
  flags.add("seq", &seq, "tokens per row", 1, 1 << 20);
  flags.add("batch", &batch, "rows per step", 1, 1 << 20);
  flags.add("precision", &precision_name, "compute precision", models::Precision::names());
  bench::add_gemm_flag(flags);
  flags.parse(argc, argv);
  if (cfg.d_model % cfg.n_heads != 0) {
    std::fprintf(stderr, "strata_bench_decoder: --d_model %lld is not a multiple of %lld heads\n",
                 (long long)cfg.d_model, (long long)cfg.n_heads);
    return 2;
  }
  const models::Precision precision = models::Precision::parse(precision_name, "--precision");
  cfg.precision = precision;
  cfg.max_seq = seq;
  Runtime::get().set_num_threads(threads);
  const FmaPeak fma = measure_fma_peak(false);
  const double peak = fma.gflops();
  const double bf16_peak = precision.mixed() ? measure_bf16_dot_peak_gflops() : 0.0;
  const double gemm_rate =
      bench::measure_gemm_gflops(batch * seq, cfg.d_model, cfg.d_ff, precision.compute);

  models::DecoderLM model(cfg, 1);
  std::vector<optim::NamedParam> named;
  for (const auto& [n, p] : model.named_parameters()) named.push_back({n, p});
  optim::AdamW opt(optim::make_param_groups(named, optim::Hyper{1e-3, 0.1, 0.9, 0.95, 1e-8}));

  auto tokens = [&](uint64_t step) {
    std::vector<int64_t> v(size_t(batch * (seq + 1)));
    const Philox rng(7, RngStream::Test, step);
    for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(rng.bits(i) % uint32_t(cfg.vocab));
    Tensor all = from_vector(v, {batch, seq + 1});
    return std::pair{all.narrow(1, 0, seq).contiguous(), all.narrow(1, 1, seq).contiguous()};
  };
  std::vector<double> times;
  Runtime::get().allocator(Device::cpu()).reset_peak();
  for (int s = 0; s < steps + 2; ++s) {
    auto [x, y] = tokens(uint64_t(s));
    const auto t0 = std::chrono::steady_clock::now();
    model.loss(x, y).backward();
    optim::clip_grad_norm(opt, 1.0);
    opt.step();
    opt.zero_grad();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s >= 2) times.push_back(dt);  // two warm-up steps fill the allocator cache
  }
  std::sort(times.begin(), times.end());
  const double step_s = times[times.size() / 2];
  const double tok_s = double(batch * seq) / step_s;
  const double flops = model.flops_per_token(seq);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"bench\": \"decoder_train\", \"impl\": \"strata\", \"precision\": \"%s\", "
      "\"gemm\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"d_model\": %lld, "
      "\"layers\": %lld, \"seq\": %lld, \"batch\": %lld, \"params\": %lld, \"step_ms\": %.1f, "
      "\"tokens_per_s\": %.0f, \"mflop_per_token\": %.2f, \"peak_gflops\": %.1f, \"peak_vectors\": "
      "\"%s\", \"zmm_peak_gflops\": %.1f, \"ymm_peak_gflops\": %.1f, \"mfu\": %.3f, "
      "\"bf16_dot_peak_gflops\": %.1f, \"mfu_bf16\": %.3f, "
      "\"gemm_gflops\": %.1f, \"gemm_bound_ms\": %.1f, \"allocator_peak_mib\": %.1f, "
      "\"max_rss_mib\": %.1f}\n",
      precision.name().c_str(),
      std::string(gemm::kernel_name(gemm::resolve(Runtime::get().gemm_kernel()))).c_str(),
      gemm::describe(Runtime::get().gemm_kernel()).c_str(), threads, (long long)cfg.d_model,
      (long long)cfg.n_layers, (long long)seq, (long long)batch, (long long)model.num_parameters(),
      step_s * 1e3, tok_s, flops / 1e6, peak, fma.widest(), fma.zmm_gflops, fma.ymm_gflops,
      tok_s * flops / (peak * 1e9), bf16_peak,
      bf16_peak > 0 ? tok_s * flops / (bf16_peak * 1e9) : 0.0, gemm_rate,
      double(batch * seq) * flops / (gemm_rate * 1e9) * 1e3,
      double(Runtime::get().memory_stats().peak_bytes) / (1 << 20), double(ru.ru_maxrss) / 1024);
  return 0;
}
