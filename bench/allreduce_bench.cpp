// All-reduce of f32 tensors through parallel::MpiCommunicator against raw MPI measured in the same
// run: blocking (MPI_Allreduce) and async (MPI_Iallreduce + MPI_Wait), 8 B and 4 KiB .. 64 MiB.
// One JSON line per size and path, with the median time per call, the algorithm bandwidth
// (bytes / time) and the ratio ours / raw. Run with 2 ranks: bench/run_allreduce_bench.sh.
//   strata_bench_allreduce [--quick] [--raw-thread-single]
// --raw-thread-single initialises MPI with MPI_THREAD_SINGLE and times raw MPI only: what the
// watchdog's MPI_THREAD_MULTIPLE costs by itself. A last line times the watchdog bookkeeping of
// one call without MPI.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "core/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"

using namespace strata;
using parallel::MpiCommunicator;

namespace {

using Clock = std::chrono::steady_clock;

// Calls per batch for about `target` seconds a batch, from one timed call (rank 0's count for all).
int calls_for(const std::function<void()>& fn, double target) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  fn();
  const double t = std::chrono::duration<double>(Clock::now() - start).count();
  int n = std::clamp(int(target / std::max(t, 1e-7)), 1, 20000);
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return n;
}

struct Timing {
  double median = 0, min = 0;  // seconds per call over the batches
};

// Seconds per call of `fn`, timed in batches after a barrier; `iters` calls per batch. On a shared
// machine the minimum is the steadier figure; the median says what a typical call costs.
Timing time_calls(const std::function<void()>& fn, int batches, int iters) {
  std::vector<double> t;
  for (int b = 0; b < batches; ++b) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = Clock::now();
    for (int i = 0; i < iters; ++i) fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count() / iters);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

Timing better(Timing a, Timing b) {
  return {std::min(a.median, b.median), std::min(a.min, b.min)};
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, single = false;
  bench::BenchFlags flags("strata_bench_allreduce",
                          "All-reduce through MpiCommunicator against raw MPI; JSON lines.");
  flags.add_switch("quick", &quick, "fewer sizes and repetitions");
  flags.add_switch("raw-thread-single", &single,
                   "initialise MPI with MPI_THREAD_SINGLE for the raw reference");
  flags.parse(argc, argv);
  std::vector<int64_t> sizes{8};
  for (int64_t b = 4 << 10; b <= (64 << 20); b *= 4) sizes.push_back(b);

  std::optional<parallel::MpiEnv> env;  // MPI_THREAD_MULTIPLE, as the watchdog needs
  if (single) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SINGLE, &provided);
  } else {
    env.emplace(argc, argv);
  }
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  {
    std::unique_ptr<MpiCommunicator> comm;
    if (!single) comm = MpiCommunicator::world("bench");
    MPI_Comm raw;
    MPI_Comm_dup(MPI_COMM_WORLD, &raw);
    for (int64_t bytes : sizes) {
      const int64_t n = std::max<int64_t>(1, bytes / 4);
      Tensor t = ones({n});
      const double target = quick ? 0.02 : 0.1;  // seconds per batch
      const int batches = quick ? 3 : 7;
      auto raw_block = [&] {
        MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), int(n), MPI_FLOAT, MPI_SUM, raw);
      };
      auto raw_async = [&] {
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), int(n), MPI_FLOAT, MPI_SUM, raw, &req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
      };
      auto ours_block = [&] { comm->all_reduce(t, parallel::ReduceOp::Sum, "bench"); };
      auto ours_async = [&] {
        comm->all_reduce_async(t, parallel::ReduceOp::Sum, "bench")->wait();
      };
      // Sums of ones grow; keep them finite and the data the same for both sides.
      auto reset = [&] { t.fill_(1.0 / (1 << 20)); };
      struct Path {
        const char* name;
        std::function<void()> raw, ours;
      };
      std::vector<Path> paths{{"blocking", raw_block, ours_block},
                              {"async", raw_async, ours_async}};
      for (const auto& p : paths) {
        reset();
        p.raw();  // warm-up: connections, buffers
        const int iters = calls_for(p.raw, target);
        Timing raw_t, ours_t;
        if (single) {
          raw_t = time_calls(p.raw, batches, iters);
        } else {
          p.ours();
          // Interleaved halves so that drift on a shared machine hits both sides alike.
          raw_t = time_calls(p.raw, batches, iters);
          ours_t = time_calls(p.ours, batches, iters);
          raw_t = better(raw_t, time_calls(p.raw, batches, iters));
          ours_t = better(ours_t, time_calls(p.ours, batches, iters));
        }
        const double raw_s = raw_t.median, ours_s = ours_t.median;
        if (rank != 0) continue;
        std::printf(
            "{\"bench\":\"allreduce\",\"path\":\"%s\",\"ranks\":%d,\"bytes\":%lld,"
            "\"thread_level\":\"%s\",\"raw_us\":%.2f,\"raw_min_us\":%.2f,\"raw_gbps\":%.3f",
            p.name, ranks, (long long)(n * 4), single ? "single" : "multiple", raw_s * 1e6,
            raw_t.min * 1e6, double(n * 4) / raw_s / 1e9);
        if (!single)
          std::printf(
              ",\"strata_us\":%.2f,\"strata_min_us\":%.2f,\"strata_gbps\":%.3f,"
              "\"ratio\":%.3f,\"ratio_min\":%.3f",
              ours_s * 1e6, ours_t.min * 1e6, double(n * 4) / ours_s / 1e9, ours_s / raw_s,
              ours_t.min / raw_t.min);
        std::printf("}\n");
        std::fflush(stdout);
      }
    }
    MPI_Comm_free(&raw);
  }
  if (!single && rank == 0) {
    // What each call adds before and after the MPI call itself: the sequence number and the
    // "blocked in" record the watchdog reads.
    parallel::GroupProgress g("bench", 0, {0, 1});
    const int n = 2'000'000;
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      const int64_t seq = g.enter_collective();
      parallel::GroupProgress::BlockedScope b(g, parallel::OpKind::Collective, "all_reduce",
                                              "dp.grad_bucket.12", seq);
    }
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count() / n;
    std::printf("{\"bench\":\"watchdog_fast_path\",\"ns_per_call\":%.1f}\n", ns);
  }
  if (single) MPI_Finalize();
  return 0;
}
