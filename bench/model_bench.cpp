// Training throughput of crammed BERT and T5 v1.1 (issue 6): forward, loss, backward, clipping and
// the optimizer step on random tokens, with the shapes and optimizers of configs/bert-small.ini and
// configs/t5-small.ini (batch 32), which torch_model_reference.py uses for the same models in
// PyTorch.
//   BERT: seq 128, sparse prediction at a fixed 15% of positions (flat index i is masked when
//         (7 i) mod 20 < 3); AdamW lr 1e-3, betas (0.9, 0.98), eps 1e-12, wd 0.01, clip 0.5.
//   T5:   input 128 tokens, targets as long as span corruption (noise 0.15, mean span 3) makes
//         them for that input (29); AdamWScale lr 2e-2, betas (0.9, 0.999), eps 1e-6, wd 0, clip 1.
// Tokens per step count encoder and decoder tokens (T5: batch x (128 + 29)).
// Prints one JSON line: step time (median), tokens/s, MFU against the FMA peak measured in the same
// run at the same thread count, the median forward / backward / optimizer split, and peak memory
// (allocator and process RSS). On the CPU it also times the model's largest GEMM in the same run
// (gemm_gflops) and gives the step's FLOPs at that rate (gemm_bound_ms): no step of this model that
// multiplies at that rate can be faster.
//   strata_bench_model --model bert-small|bert-c5|t5-small|t5-base [--threads N] [--steps S]
//                      [--warmup W] [--batch B] [--seq L] [--input_len Ls] [--gemm KERNEL]
//                      [--device cpu|cuda|cuda:N] [--precision f32|bf16]
// On a GPU (--device cuda) the model, batches and optimizer state live on the device, each phase
// is timed up to a device synchronisation, MFU is against the GPU's nominal dense peak for the
// compute dtype (optim::nominal_peak_tflops: bf16, or TF32 for f32), and the allocator figures are
// the GPU's. --precision bf16 computes in bf16 with f32 master weights (models/precision.h).
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/gemm_rate.h"
#include "core/device_select.h"
#include "core/fma_peak.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "data/objectives.h"
#include "models/bert.h"
#include "models/precision.h"
#include "models/t5.h"
#include "optim/adamw.h"
#include "optim/clip.h"

using namespace strata;

namespace {

struct Options {
  std::string model = "bert-small";
  int threads = 1, steps = 10, warmup = 2;
  int64_t batch = 32, seq = 128, input_len = 128;
  std::string device = "cpu";
  std::string precision = "f32";
};

// One training step split into the phases the JSON reports.
struct StepFns {
  std::function<Tensor(uint64_t step)> loss;  // forward + loss on the step's batch
  std::unique_ptr<optim::Optimizer> opt;
  double clip = 0;
};

Tensor random_ids(uint64_t step, uint32_t which, int64_t rows, int64_t cols, int64_t lo,
                  int64_t hi) {
  std::vector<int64_t> v(size_t(rows * cols));
  const Philox rng(7, RngStream::Test, step * 4 + which);
  for (size_t i = 0; i < v.size(); ++i) v[i] = lo + int64_t(rng.bits(i) % uint32_t(hi - lo));
  return from_vector(v, {rows, cols});
}

std::vector<optim::NamedParam> named_params(const models::Module& m) {
  std::vector<optim::NamedParam> named;
  for (const auto& [n, p] : m.named_parameters()) named.push_back({n, p});
  return named;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run(const Options& o) {
  Runtime::get().set_num_threads(o.threads);
  const Device device = strata::resolve_device(o.device, "--device");
  const bool on_gpu = !device.is_cpu();
  const models::Precision precision = models::Precision::parse(o.precision, "--precision");
  const bool bert = o.model.rfind("bert", 0) == 0;
  // Batches are built on the host and copied, as the trainer's are.
  auto on_device = [device](const Tensor& t) { return device.is_cpu() ? t : t.to(device); };

  std::shared_ptr<models::Module> model;
  StepFns fns;
  int64_t tokens_per_step = 0, enc_len = 0, dec_len = 0, masked = 0;
  double flops_per_step = 0;
  int64_t gemm_k = 0, gemm_n = 0;  // [batch x enc_len, k] x [k, n]: what measure_gemm_gflops times
  if (bert) {
    const models::BertConfig cfg = models::bert_preset(o.model);
    auto m = std::make_shared<models::BertMLM>(cfg, 1);
    m->set_precision(precision);
    m->to(device);
    model = m;
    enc_len = o.seq;
    gemm_k = cfg.d_model, gemm_n = cfg.d_ff;
    tokens_per_step = o.batch * o.seq;
    // The fixed 15% pattern; masked tokens get a random label, the rest -100.
    std::vector<uint8_t> is_masked(static_cast<size_t>(tokens_per_step));
    for (int64_t i = 0; i < tokens_per_step; ++i) {
      is_masked[size_t(i)] = (7 * i) % 20 < 3;
      masked += is_masked[size_t(i)];
    }
    fns.loss = [m, o, cfg, is_masked, on_device](uint64_t step) {
      const Tensor ids = on_device(random_ids(step, 0, o.batch, o.seq, 1, cfg.vocab));  // no pad
      std::vector<int64_t> lab =
          random_ids(step, 1, o.batch, o.seq, 1, cfg.vocab).to_vector<int64_t>();
      for (size_t i = 0; i < lab.size(); ++i)
        if (!is_masked[i]) lab[i] = -100;
      return m->mlm_loss(ids, on_device(from_vector(lab, {o.batch, o.seq})));
    };
    fns.opt = std::make_unique<optim::AdamW>(
        optim::make_param_groups(named_params(*m), optim::Hyper{1e-3, 0.01, 0.9, 0.98, 1e-12}));
    fns.clip = 0.5;
    // The FLOP count at the pattern's exact masked fraction.
    flops_per_step =
        models::BertMLM::flops_per_token(cfg, o.seq, double(masked) / double(tokens_per_step)) *
        double(tokens_per_step);
  } else {
    const models::T5Config cfg = models::t5_preset(o.model);
    auto m = std::make_shared<models::T5Model>(cfg, 1);
    m->set_precision(precision);
    m->to(device);
    model = m;
    const data::SpanLengths l = data::span_corruption_lengths(o.input_len, 0.15, 3.0);
    enc_len = l.inputs;
    dec_len = l.targets;
    tokens_per_step = o.batch * (enc_len + dec_len);
    gemm_k = cfg.d_model, gemm_n = cfg.d_ff;
    fns.loss = [m, o, cfg, enc_len, dec_len, on_device](uint64_t step) {
      const Tensor x = on_device(random_ids(step, 0, o.batch, enc_len, 2, cfg.vocab));
      const Tensor y = on_device(random_ids(step, 1, o.batch, dec_len, 2, cfg.vocab));
      return m->loss(x, y);
    };
    fns.opt = std::make_unique<optim::AdamWScale>(
        optim::make_param_groups(named_params(*m), optim::Hyper{2e-2, 0.0, 0.9, 0.999, 1e-6}));
    fns.clip = 1.0;
    flops_per_step = models::T5Model::flops_per_example(cfg, enc_len, dec_len) * double(o.batch);
  }

  // CPU: the FMA peak measured now, at this thread count, with the widest vectors the CPU has
  // (and the bf16 dot-product peak for a bf16 run where the CPU has one); GPU: the nominal dense
  // peak.
  const FmaPeak fma = on_gpu ? FmaPeak{} : measure_fma_peak(false);
  const double peak =
      on_gpu ? strata::nominal_peak_tflops(device, precision.compute_dtype(model->dtype())) * 1e3
             : fma.gflops();
  const double bf16_peak = !on_gpu && precision.mixed() ? measure_bf16_dot_peak_gflops() : 0.0;
  const double gemm_rate =
      on_gpu ? 0.0
             : bench::measure_gemm_gflops(o.batch * enc_len, gemm_k, gemm_n, precision.compute);

  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  // Process CPU time per step beside wall time: on a machine shared with other jobs, a run whose
  // cpu_ms falls well short of threads x step_ms did not have its cores.
  auto cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  std::vector<double> total, fwd, bwd, upd, cpu;
  // Phase boundaries wait for the device, so each phase is timed by the work it queued.
  auto sync = [device] { strata::synchronize(device); };
  Runtime::get().allocator(device).reset_peak();
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    sync();
    const double c0 = cpu_seconds();
    const auto t0 = clock::now();
    Tensor loss = fns.loss(uint64_t(s));
    sync();
    const auto t1 = clock::now();
    loss.backward();
    sync();
    const auto t2 = clock::now();
    optim::clip_grad_norm(*fns.opt, fns.clip);
    fns.opt->step();
    fns.opt->zero_grad();
    sync();
    const auto t3 = clock::now();
    const double c1 = cpu_seconds();
    if (s < o.warmup) continue;  // warm-up steps fill the allocator cache
    total.push_back(seconds(t0, t3));
    fwd.push_back(seconds(t0, t1));
    bwd.push_back(seconds(t1, t2));
    upd.push_back(seconds(t2, t3));
    cpu.push_back(c1 - c0);
  }
  const double step_s = median(total);
  const double tok_s = double(tokens_per_step) / step_s;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"bench\": \"model_train\", \"model\": \"%s\", \"impl\": \"strata\", \"device\": \"%s\", "
      "\"precision\": \"%s\", \"gemm\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, "
      "\"batch\": %lld, "
      "\"enc_len\": %lld, \"dec_len\": %lld, \"masked\": %lld, "
      "\"params\": %lld, \"step_ms\": %.1f, \"forward_ms\": %.1f, \"backward_ms\": %.1f, "
      "\"optimizer_ms\": %.1f, \"cpu_ms\": %.1f, \"tokens_per_s\": %.0f, \"gflop_per_step\": %.2f, "
      "\"peak_gflops\": %.1f, \"peak_vectors\": \"%s\", \"zmm_peak_gflops\": %.1f, "
      "\"ymm_peak_gflops\": %.1f, \"mfu\": %.3f, \"bf16_dot_peak_gflops\": %.1f, "
      "\"mfu_bf16\": %.3f, \"gemm_gflops\": %.1f, \"gemm_bound_ms\": %.1f, "
      "\"allocator_peak_mib\": %.1f, \"max_rss_mib\": "
      "%.1f}\n",
      o.model.c_str(), strata::device_name(device).c_str(), precision.name().c_str(),
      std::string(gemm::kernel_name(gemm::resolve(Runtime::get().gemm_kernel()))).c_str(),
      on_gpu ? "cuda" : gemm::describe(Runtime::get().gemm_kernel()).c_str(), o.threads,
      (long long)o.batch, (long long)enc_len, (long long)dec_len, (long long)masked,
      (long long)model->num_parameters(), step_s * 1e3, median(fwd) * 1e3, median(bwd) * 1e3,
      median(upd) * 1e3, median(cpu) * 1e3, tok_s, flops_per_step / 1e9, peak,
      on_gpu ? "gpu" : fma.widest(), fma.zmm_gflops, fma.ymm_gflops,
      peak > 0 ? flops_per_step / step_s / (peak * 1e9) : 0.0, bf16_peak,
      bf16_peak > 0 ? flops_per_step / step_s / (bf16_peak * 1e9) : 0.0, gemm_rate,
      gemm_rate > 0 ? flops_per_step / (gemm_rate * 1e9) * 1e3 : 0.0,
      double(Runtime::get().memory_stats(device).peak_bytes) / (1 << 20),
      double(ru.ru_maxrss) / 1024);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_omp_wait(argv);
  Options o;
  bench::BenchFlags flags("strata_bench_model",
                          "BERT / T5 training throughput on random tokens; one JSON line.");
  flags.add("model", &o.model, "model preset", {"bert-small", "bert-c5", "t5-small", "t5-base"});
  flags.add("threads", &o.threads, "OpenMP threads", 1, 1024);
  flags.add("steps", &o.steps, "timed steps", 1, 100000);
  flags.add("warmup", &o.warmup, "untimed steps first", 0, 100000);
  flags.add("batch", &o.batch, "rows per step", 1, 1 << 20);
  flags.add("seq", &o.seq, "BERT tokens per row", 1, 1 << 20);
  flags.add("input_len", &o.input_len, "T5 encoder tokens per row", 4, 1 << 20);
  flags.add("device", &o.device, "cpu, cuda or cuda:N");
  flags.add("precision", &o.precision, "compute precision", models::Precision::names());
  bench::add_gemm_flag(flags);
  flags.parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strata_bench_model: %s\n", e.what());
    return 1;
  }
}
