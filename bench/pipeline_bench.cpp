// Pipeline bubble: the measured idle fraction of a pipeline step against the theoretical
// (p - 1) / (m + p - 1), for GPipe and 1F1B and m in {1, 2, 4, 8} micro-batches of a fixed size,
// on a small decoder LM with one stage per rank (p = the number of ranks). Run under mpirun:
//   OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive mpirun -np 2 strata_bench_pipeline [--steps S]
//       [--d_model D] [--layers L] [--seq T] [--rows B] [--vocab V]
// Each step is bracketed by barriers; its makespan is the time between them, and
//   bubble = 1 - mean over stages of (forward + backward compute) / makespan,
// the quantity the theory predicts (the simulation in parallel/pipeline_schedule.h defines it so).
// `idle` is the executor's own figure: time blocked on messages / (blocked + compute), mean over
// stages. Rank 0 prints one JSON line per (schedule, m) with the median over the measured steps.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "models/pipeline_stage_decoder.h"
#include "parallel/mpi_env.h"
#include "parallel/pipeline_executor.h"
#include "parallel/topology.h"

using namespace strata;

namespace {

Tensor random_ids(int64_t rows, int64_t len, int64_t vocab, uint64_t seed) {
  const Tensor u = rand({rows, len}, RandomKey{seed, uint32_t(RngStream::Test), 0, 0}, DType::f64);
  std::vector<int64_t> ids;
  for (double v : u.to_vector<double>())
    ids.push_back(std::min<int64_t>(int64_t(v * double(vocab)), vocab - 1));
  return from_vector<int64_t>(ids, {rows, len});
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiEnv env(argc, argv);
  int steps = 5;
  int64_t seq = 64, rows = 4;
  models::DecoderConfig cfg;
  cfg.vocab = 256;  // a small head, so the last stage costs about what the others do
  cfg.d_model = 128;
  cfg.n_layers = 8;
  cfg.n_heads = 4;
  cfg.d_ff = 512;
  bench::BenchFlags flags("strata_bench_pipeline",
                          "Pipeline bubble of GPipe and 1F1B, one rank per stage; JSON lines.");
  flags.add("steps", &steps, "timed steps", 1, 100000);
  flags.add("d_model", &cfg.d_model, "model width (a multiple of the 4 heads)", 4, 65536);
  flags.add("layers", &cfg.n_layers, "decoder layers", 1, 4096);
  flags.add("seq", &seq, "tokens per row", 1, 1 << 20);
  flags.add("rows", &rows, "rows per micro-batch", 1, 1 << 20);
  flags.add("vocab", &cfg.vocab, "vocabulary size", 2, 1 << 24);
  flags.parse(argc, argv);
  cfg.max_seq = seq;
  Runtime::get().set_num_threads(1);

  const int world = env.world_size();
  parallel::Topology topo = parallel::Topology::create(parallel::Layout{1, 1, world});
  parallel::Communicator& pp = topo.pp();
  const int p = pp.size(), rank = pp.rank();
  const models::StageLayout layout = models::StageLayout::balanced(cfg.n_layers, p);
  models::DecoderStage stage(cfg, 1, layout, rank);

  for (const int64_t m : {1, 2, 4, 8})
    for (const auto kind : {parallel::ScheduleKind::GPipe, parallel::ScheduleKind::OneFOneB}) {
      const parallel::PipelineSchedule schedule(kind, p, m);
      parallel::PipelineExecutor exec(pp, schedule);
      std::vector<double> bubbles, idles, makespans, simulated;
      for (int step = 0; step <= steps; ++step) {  // step 0 warms up
        std::vector<models::DecoderMicroBatch> mbs;
        for (int64_t i = 0; i < m; ++i)
          mbs.push_back({random_ids(rows, seq, cfg.vocab, uint64_t(100 * step + i)),
                         random_ids(rows, seq, cfg.vocab, uint64_t(100 * step + i + 50))});
        stage.set_micro_batches(std::move(mbs));
        stage.zero_grad();
        pp.barrier("bench.start");
        const auto t0 = std::chrono::steady_clock::now();
        const parallel::PipelineStepResult r = exec.run(stage);
        pp.barrier("bench.end");
        const double makespan =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        // Per stage (slot `rank`): forward and backward time per micro-batch and the idle
        // fraction; and the longest makespan.
        std::vector<double> mine(size_t(3 * p), 0.0);
        mine[size_t(rank)] = r.stats.forward_s / double(m);
        mine[size_t(p + rank)] = r.stats.backward_s / double(m);
        mine[size_t(2 * p + rank)] = r.stats.idle_fraction();
        Tensor per_stage = from_vector<double>(mine, {3 * p});
        Tensor span = from_vector<double>({makespan}, {1});
        pp.all_reduce(per_stage, parallel::ReduceOp::Sum, "bench.stats");
        pp.all_reduce(span, parallel::ReduceOp::Max, "bench.makespan");
        if (step == 0) continue;
        const auto v = per_stage.to_vector<double>();
        const std::vector<double> fwd(v.begin(), v.begin() + p),
            bwd(v.begin() + p, v.begin() + 2 * p);
        const double ms = span.item<double>();
        double busy = 0, idle = 0;
        for (int s = 0; s < p; ++s) {
          busy += double(m) * (fwd[size_t(s)] + bwd[size_t(s)]) / double(p);
          idle += v[size_t(2 * p + s)] / double(p);
        }
        bubbles.push_back(1.0 - busy / ms);
        idles.push_back(idle);
        makespans.push_back(ms);
        // The bubble this schedule implies for these measured, unequal stage costs with free
        // messages: what imbalance alone explains.
        simulated.push_back(parallel::simulate(schedule, fwd, bwd).bubble_fraction());
      }
      if (rank == 0)
        std::printf(
            "{\"bench\": \"pipeline\", \"schedule\": \"%s\", \"stages\": %d, \"micro_batches\": "
            "%ld, \"layout\": \"%s\", \"bubble\": %.3f, \"theory\": %.3f, \"simulated\": %.3f, "
            "\"idle\": %.3f, "
            "\"step_ms\": %.1f, \"micro_batch\": [%ld, %ld], \"d_model\": %ld, \"layers\": %ld}\n",
            schedule.name().c_str(), p, long(m), layout.str().c_str(), median(bubbles),
            parallel::theoretical_bubble(p, m), median(simulated), median(idles),
            1e3 * median(makespans), long(rows), long(seq), long(cfg.d_model), long(cfg.n_layers));
      std::fflush(stdout);
    }
  return 0;
}
